"""Typed loaders: every file and value the suite reads is checked here, at the boundary.

One loader per format (meta.json, prepare.json, eval.json, metrics.jsonl rows, YAML config and
option values, HTTP headers; vocab.tsv and the encoded folder in `lightrnn.data.encoded`, the
checkpoint payload and its word table in `lightrnn.training.checkpoint.check_payload`). Each one checks
types, ranges and invariants and raises `DataError` (exit 2) naming the file (or option) and the
field; what it returns is checked, so the code downstream never meets a string where a number
belongs, a null perplexity or a word id past V.

Why hand-written checks rather than pydantic or the workflow's JSON schema: the messages must be
one line naming the file, the field and the command that rewrites it (pydantic's are multi-line
and name neither), the formats are few and small, checkpoints hold tensors that neither library
types, and no new dependency has to be kept in step across pyproject and the conda envs. The
primitives below (`Fields`) are the whole mechanism: about a hundred lines.

Bounds: every echoed value is cut to `ECHO_CHARS` characters (`short`), whatever the input; JSON
and YAML nested deeper than `MAX_DEPTH` are refused (Python's parsers recurse); YAML is composed
into a node graph first and refused when its expansion (aliases counted as often as they are
used) exceeds `MAX_YAML_NODES`, so a 1 KB alias bomb is never expanded; JSON files are read
up to `MAX_JSON_BYTES`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Iterable

from lightrnn.core.errors import DataError

ECHO_CHARS = 80
MAX_DEPTH = 64
MAX_YAML_NODES = 100_000
MAX_JSON_BYTES = 64 << 20
INT64_MAX = 2**63 - 1


def input_file(path: str | os.PathLike, what: str = "", fix: str = "", fifo_ok: bool = False) -> Path:
    """`path` when it is a regular file (after symlinks); else one error that says what it is instead.

    The one check of every file argument and every file a command reads: "does not exist" only
    when nothing is there; a folder, a FIFO, a device (`/dev/zero`) or a socket is named as such
    (a device could be read for ever, a FIFO hangs until someone writes to it). `what` prefixes
    the path (an option, "checkpoint"); `fix` says what to pass instead. `fifo_ok`: a reader that
    streams its input once (text) may take a FIFO (`--text <(zcat corpus.gz)`).
    """
    tail = f"; {fix}" if fix else ""
    if os.fspath(path) == "":  # Path("") would be the current folder
        raise DataError(f"{what or 'a file path'} is empty; pass a file path{tail}")
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        mode = path.stat().st_mode
    except NotADirectoryError:  # a part of the path is no folder: say which, and what it is
        above = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
        kind = f": {above} is {_kind(above.stat().st_mode)}, not a folder" if above is not None else ""
        raise FileNotFoundError(f"{label} does not exist{kind}{tail}") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{label} does not exist{tail}") from None
    except OSError as error:  # a permission on a folder of the path, a symlink loop, a name too long
        raise OSError(error.errno, f"{label} cannot be read ({error.strerror}){tail}") from None
    if stat.S_ISREG(mode) or (fifo_ok and stat.S_ISFIFO(mode)):
        return path
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{label} is a folder, not a file{tail}")
    raise DataError(f"{label} is {_kind(mode)}, not a regular file{tail}")


def _kind(mode: int) -> str:
    """What a file of this `st_mode` is, in words."""
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def short(value: Any, limit: int = ECHO_CHARS) -> str:
    """`repr(value)` on one line, cut to `limit` characters (a huge or hostile value stays short)."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > limit:
        text = f"<{type(value).__name__} of {len(value)} items>"
    else:
        try:
            text = repr(value)
        except (RecursionError, ValueError):  # a self-referencing structure; an int too long to print
            text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth_ok(value: Any) -> bool:
    """Whether `value` (parsed JSON/YAML) nests at most MAX_DEPTH levels (iterative: no recursion)."""
    todo = [(value, 1)]
    seen = 0
    while todo:
        item, depth = todo.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > 10 * MAX_YAML_NODES:
            return False
        if isinstance(item, dict):
            todo.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend((child, depth + 1) for child in item)
    return True


class Fields:
    """Checks of the fields of one parsed object; every failure names `where`, the field and `fix`."""

    def __init__(self, where: str, fix: str) -> None:
        self.where, self.fix = where, fix

    def error(self, field: str, expected: str, value: Any) -> DataError:
        return DataError(f"{self.where}: {field}: expected {expected}, got {short(value)}; {self.fix}")

    def mapping(self, value: Any, field: str = "the file") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(field, "a JSON object", value)
        return value

    def present(self, obj: dict, key: str, optional: bool) -> bool:
        if key in obj and obj[key] is not None:
            return True
        if optional:
            return False
        raise DataError(f"{self.where}: {key}: missing; {self.fix}")

    def integer(self, obj: dict, key: str, low: int | None = None, high: int | None = None,
                optional: bool = False, field: str | None = None) -> int | None:
        if not self.present(obj, key, optional):
            return None
        return self.int_value(obj[key], field or key, low, high)

    def int_value(self, value: Any, field: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, "an integer", value)
        low_ok = low is None or value >= low
        high = INT64_MAX if high is None else high
        if not low_ok or value > high:
            bounds = f"an integer in [{low if low is not None else '-inf'}, {high}]"
            raise self.error(field, bounds, value)
        return value

    def number(self, obj: dict, key: str, low: float | None = None, high: float | None = None,
               optional: bool = False, allow_inf: bool = False) -> float | None:
        if not self.present(obj, key, optional):
            return None
        return self.float_value(obj[key], key, low, high, allow_inf)

    def float_value(self, value: Any, field: str, low: float | None = None, high: float | None = None,
                    allow_inf: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, "a number", value)
        try:
            value = float(value)
        except OverflowError:
            raise self.error(field, "a number of float range", value) from None
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise self.error(field, "a finite number", value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(field, f"a number in [{low}, {high}]", value)
        return value

    def string(self, obj: dict, key: str, optional: bool = False, choices: Iterable[str] | None = None,
               max_chars: int = 4096) -> str | None:
        if not self.present(obj, key, optional):
            return None
        value = obj[key]
        if not isinstance(value, str) or len(value) > max_chars:
            raise self.error(key, f"a string of at most {max_chars} characters", value)
        if choices is not None and value not in tuple(choices):
            raise self.error(key, f"one of {', '.join(choices)}", value)
        return value

    def split_counts(self, obj: dict, key: str, low: int, optional: bool = False,
                     splits: tuple[str, ...] = ("train", "valid", "test")) -> dict[str, int] | None:
        if not self.present(obj, key, optional):
            return None
        value = self.mapping(obj[key], key)
        return {split: self.int_value(value.get(split), f"{key}.{split}", low)
                for split in splits if split in value or not optional}


# ----- JSON --------------------------------------------------------------------------------------

def parse_json(text: str, where: str, fix: str) -> Any:
    """`text` parsed as JSON; DataError naming `where` on bad JSON, NaN/Infinity literals or deep nesting."""
    def refuse_constant(name: str) -> Any:
        raise DataError(f"{where}: {name} is not JSON; {fix}")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg} at line {error.lineno}); {fix}") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply; {fix}") from None
    except ValueError as error:  # an integer literal of thousands of digits
        if isinstance(error, DataError):
            raise
        raise DataError(f"{where}: not valid JSON ({short(str(error))}); {fix}") from None
    if not _depth_ok(value):
        raise DataError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels; {fix}")
    return value


def read_json(path: str | os.PathLike, fix: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file (UTF-8, at most `max_bytes`), parsed; DataError naming it otherwise."""
    path = input_file(path, fix=fix)
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path}: {size} bytes, more than the {max_bytes} such a file can hold; {fix}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}); {fix}") from None
    return parse_json(text, str(path), fix)


def read_json_object(path: str | os.PathLike, fix: str) -> dict[str, Any]:
    """A JSON file holding one object."""
    return Fields(str(path), fix).mapping(read_json(path, fix))


# ----- meta.json, prepare.json, eval.json, metrics rows ------------------------------------------

PREPARE_FIX = "run `lightrnn data prepare` again, or pass --dataset NAME"
EVAL_FIX = "rerun `lightrnn eval` (the evaluate job) that wrote it"
METRICS_FIX = "the file is damaged: rerun what wrote it"


def check_prepare(value: Any, path: str | os.PathLike, datasets: Iterable[str]) -> dict[str, Any]:
    """prepare.json: {"dataset": one of `datasets` (the registry's), "corpus", "source", "splits": {split: {lines, tokens}}}."""
    fields = Fields(str(path), PREPARE_FIX)
    obj = fields.mapping(value)
    dataset = fields.string(obj, "dataset", optional=True, choices=list(datasets))
    checked: dict[str, Any] = {"dataset": dataset}
    for key in ("corpus", "source"):
        checked[key] = fields.string(obj, key, optional=True)
    if fields.present(obj, "splits", optional=True):
        splits = fields.mapping(obj["splits"], "splits")
        checked["splits"] = {}
        for split, stats in splits.items():
            stats = fields.mapping(stats, f"splits.{split}")
            checked["splits"][split] = {
                key: fields.int_value(stats.get(key), f"splits.{split}.{key}", 0) for key in ("lines", "tokens")
            }
    return checked


def load_prepare(path: str | os.PathLike, datasets: Iterable[str]) -> dict[str, Any]:
    return check_prepare(read_json(path, PREPARE_FIX), path, datasets)


EVAL_NUMBERS = ("tokens_per_s", "nll_sum", "seconds", "wall_s")


def check_eval(value: Any, where: str) -> dict[str, Any]:
    """eval.json: dataset and model names, a finite perplexity >= 1, typed optional fields."""
    fields = Fields(where, EVAL_FIX)
    obj = fields.mapping(value)
    checked = dict(obj)
    checked["dataset"] = fields.string(obj, "dataset")
    checked["model"] = fields.string(obj, "model")
    checked["ppl"] = fields.number(obj, "ppl", low=1.0)
    for key in ("tokens", "params", "param_bytes", "batch_size"):
        checked[key] = fields.integer(obj, key, 0, optional=True)
    for key in EVAL_NUMBERS:
        checked[key] = fields.number(obj, key, low=0.0, optional=True)
    for key in ("device", "git_rev", "split", "checkpoint", "data", "trained_on"):
        checked[key] = fields.string(obj, key, optional=True)
    checked["block_tokens"] = fields.integer(obj, "block_tokens", 1, optional=True)
    if fields.present(obj, "block_nll", optional=True):
        blocks = obj["block_nll"]
        if not isinstance(blocks, list) or not blocks:
            raise fields.error("block_nll", "a non-empty list of NLL sums", blocks)
        checked["block_nll"] = [fields.float_value(value, "block_nll", low=0.0) for value in blocks]
        if checked["block_tokens"] is None or checked.get("tokens") is None:
            raise fields.error("block_nll", "block_tokens and tokens beside it", None)
        if len(blocks) != -(-checked["tokens"] // checked["block_tokens"]):
            raise fields.error("block_nll", f"ceil(tokens / block_tokens) = "
                               f"{-(-checked['tokens'] // checked['block_tokens'])} blocks", f"{len(blocks)} blocks")
    return {key: value for key, value in checked.items() if key in obj}


def load_eval(path: str | os.PathLike) -> dict[str, Any]:
    return check_eval(read_json(path, EVAL_FIX), str(path))


METRICS_INTS = ("seed", "round", "epoch", "step", "params", "param_bytes", "peak_memory_bytes")
METRICS_PPLS = ("train_ppl", "valid_ppl", "test_ppl")
METRICS_NUMBERS = ("lr", "train_tokens_per_s", "eval_tokens_per_s", "wall_s", "realloc_s")
METRICS_SIGNED = ("realloc_objective", "realloc_lower_bound", "realloc_nll_before", "realloc_nll_after")


def check_metrics_row(value: Any, where: str, fix: str = METRICS_FIX) -> dict[str, Any]:
    """One metrics.jsonl row: kind, dataset and model named; every schema number typed and in range."""
    fields = Fields(where, fix)
    row = dict(fields.mapping(value, "the row"))
    row["kind"] = fields.string(row, "kind", optional=True, choices=("epoch", "realloc")) or "epoch"
    for key in ("dataset", "model"):
        fields.string(row, key)
    for key in ("device", "git_rev", "config_hash"):
        fields.string(row, key, optional=True)
    for key in METRICS_INTS:
        if key in row and row[key] is not None:
            row[key] = fields.int_value(row[key], key, 0)
    for key in METRICS_PPLS:
        if key in row and row[key] is not None:
            row[key] = fields.float_value(row[key], key, low=1.0)
    for key in METRICS_NUMBERS:
        if key in row and row[key] is not None:
            row[key] = fields.float_value(row[key], key, low=0.0)
    for key in METRICS_SIGNED:
        if key in row and row[key] is not None:
            row[key] = fields.float_value(row[key], key)
    return row


def read_metrics(path: str | os.PathLike, max_line_bytes: int = 1 << 20) -> list[dict[str, Any]]:
    """Every row of a metrics.jsonl file, checked; DataError naming the file and line otherwise."""
    path = input_file(path)
    rows = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if len(raw) > max_line_bytes:
                raise DataError(f"{where}: a line of {len(raw)} bytes, longer than a metrics row; {METRICS_FIX}")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{where}: not UTF-8 text (byte {error.start}); {METRICS_FIX}") from None
            if line.strip():
                rows.append(check_metrics_row(parse_json(line, where, METRICS_FIX), where))
    return rows


# ----- YAML (config files, --set and --option values) --------------------------------------------

def parse_yaml(text: str, where: str) -> Any:
    """YAML text parsed safely: composed first, refused when deeper than MAX_DEPTH or bigger than
    MAX_YAML_NODES once aliases are expanded (so an alias bomb is never built or echoed)."""
    import yaml

    fix = "write plain YAML values (no anchors expanding to huge data)"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise DataError(f"{where}: YAML nested too deeply; {fix}") from None
    except yaml.YAMLError as error:
        detail = short(" ".join(str(error).split()), 200)
        raise DataError(f"{where}: not valid YAML: {detail}") from None
    if node is None:
        return None
    _check_yaml_size(node, where, fix)
    try:
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 (SafeLoader)
    except RecursionError:
        raise DataError(f"{where}: YAML nested too deeply; {fix}") from None
    except (yaml.YAMLError, ValueError, OverflowError) as error:  # a bad date, an int of 5000 digits  # a bad timestamp, a duplicate merge key ...
        detail = short(" ".join(str(error).split()), 200)
        raise DataError(f"{where}: not valid YAML: {detail}") from None


def _check_yaml_size(root: Any, where: str, fix: str) -> None:
    """Expanded node count and depth of a composed YAML graph, in time linear in its distinct nodes."""
    import yaml

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on the stack, 2 = done
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        if finished:
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            state[key] = 2
            if size[key] > MAX_YAML_NODES:
                raise DataError(f"{where}: the YAML expands to more than {MAX_YAML_NODES} values; {fix}")
            if depth[key] > MAX_DEPTH:
                raise DataError(f"{where}: YAML nested deeper than {MAX_DEPTH} levels; {fix}")
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            raise DataError(f"{where}: the YAML refers to itself (a recursive alias); {fix}")
        state[key] = 1
        stack.append((node, True))
        stack.extend((child, False) for child in children if state.get(id(child)) != 2)
        for child in children:
            if state.get(id(child)) == 1:
                raise DataError(f"{where}: the YAML refers to itself (a recursive alias); {fix}")


# ----- HTTP headers ------------------------------------------------------------------------------

def content_length(value: str | None, where: str) -> int | None:
    """A Content-Length header as a byte count (None when absent); ValueError naming `where` otherwise."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise ValueError(f"{where}: the server sent Content-Length {short(value)}, not a byte count")
    return int(text)
