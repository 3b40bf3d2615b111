"""The one list of the dashboard's pages: the app's navigation, the tests and the benchmark all read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    slug: str  # its script's name in app_pages/ (which calls render() of dashboard/views/<slug>.py), its URL path
    title: str
    icon: str

    @property
    def script(self) -> str:
        """The script's path relative to dashboard/ (what st.Page and AppTest.switch_page take)."""
        return f"app_pages/{self.slug}.py"


PAGES = (
    Page("overview", "Overview", ":material/bar_chart:"),
    Page("positions", "Positions", ":material/show_chart:"),
    Page("token_types", "Token types", ":material/category:"),
    Page("examples", "Examples", ":material/article:"),
    Page("compare", "Compare", ":material/compare_arrows:"),
    Page("stages", "Stages", ":material/stacked_line_chart:"),
    Page("branching", "Branching factor", ":material/account_tree:"),
    Page("experiments", "Experiments", ":material/science:"),
    Page("control", "Template control", ":material/grid_view:"),
)
SLUGS = tuple(page.slug for page in PAGES)  # what tests and the benchmark iterate


def script(slug: str) -> str:
    """The script of the page `slug` (what st.switch_page takes)."""
    return next(page.script for page in PAGES if page.slug == slug)
