"""A second viewer (a new session: a colleague opening the shared link) reuses what the first one computed."""

from __future__ import annotations

from dashboard_helpers import open_page

from dashboard import stats


def test_a_new_session_does_not_recompute_which_runs_share_answers(runs_dir, monkeypatch):
    calls = {"shared_answers": 0, "answer_groups": 0}
    for name in calls:
        real = getattr(stats, name)

        def counted(*args, real=real, name=name):
            calls[name] += 1
            return real(*args)

        monkeypatch.setattr(stats, name, counted)
    first = open_page("compare")  # a new session
    assert first.metric, "Compare drew nothing to compare"
    after_first = dict(calls)
    assert after_first["shared_answers"] >= 1 and after_first["answer_groups"] >= 1
    second = open_page("compare")  # another new session on the same files
    assert calls == after_first  # computed once per server, not per viewer
    assert [m.value for m in second.metric] == [m.value for m in first.metric]
