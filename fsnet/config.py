"""One config tree: pydantic models for every section, values from YAML.

Precedence: ``configs/default.yaml`` (every key, each with a comment) <- preset files in the order given
(``--config tiny`` or ``--config path/to/file.yaml``) <- command-line options <- ``--set a.b=c`` overrides.
Unknown keys and wrong types are errors that name the key and the file (or option) that set it. The
models have no defaults of their own: default.yaml is the one place where a value is chosen.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
)

from fsnet.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_FILE = CONFIG_DIR / "default.yaml"
REDACTED = "**********"
SECRET_KEYS = {"storage.key", "storage.secret", "storage.token"}  # never echoed, even in errors

# A count of images, or a fraction (0 < f < 1) of the eligible images for small catalogs.
CountOrFraction = Union[PositiveInt, Annotated[float, Field(gt=0, lt=1)]]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(Section):
    endpoint_url: str | None
    region: str | None
    key: SecretStr | None
    secret: SecretStr | None
    token: SecretStr | None
    anonymous: bool
    connect_timeout_s: PositiveFloat
    read_timeout_s: PositiveFloat
    retries: Annotated[int, Field(ge=1)]


class CelebaFiles(Section):
    attr_file: str
    partition_file: str | None
    images: str


class AddeFiles(Section):
    imgs_train: str
    imgs_test: str
    labels_train: str
    labels_test: str
    attr_num: str
    ref: str | None
    indfull: str | None
    gt: str | None
    attribute_names: list[str] | None


class SourceConfig(Section):
    kind: Literal["folder", "celeba", "adde"]
    path: str | None
    table: str
    images: str
    image_column: str
    id_column: str | None
    attributes: list[str] | None
    ignore: list[str]
    extra: list[str]
    unknown_values: list[str]
    celeba: CelebaFiles
    adde: AddeFiles


class CatalogConfig(Section):
    shard_rows: PositiveInt
    row_group_rows: PositiveInt
    formats: list[Literal["JPEG", "PNG", "WEBP"]] = Field(min_length=1)
    pack_actors: PositiveInt | None


class SplitConfig(Section):
    n_query: CountOrFraction
    n_gallery: CountOrFraction
    seed: int


class SyntheticConfig(Section):
    n: PositiveInt
    size: Annotated[int, Field(ge=32, le=1024)]
    seed: int
    jpeg_quality: Annotated[int, Field(ge=1, le=95)]


class ModelConfig(Section):
    kind: Literal["fsn", "adde"]
    backbone: Literal["alexnet", "mobilenet_v2", "resnet18", "resnet50", "tiny"]
    weights: str
    variant: Literal["wo_rank", "rank", "rank_l", "rank_lg", "full", "full_ff"]
    image_size: Annotated[int, Field(ge=32)] | Literal["auto"]  # auto: fsnet/input_size.py, decided at training
    conv5_channels: PositiveInt
    conv67_channels: PositiveInt
    fc_dim: PositiveInt
    embed_dim: PositiveInt
    global_dim: PositiveInt
    roi_threshold: Annotated[float, Field(gt=0, lt=1)]
    roi_size: PositiveInt | Literal["auto"]
    dropout: Annotated[float, Field(ge=0, lt=1)]


class StageConfig(Section):
    epochs: NonNegativeInt
    lr: PositiveFloat
    schedule: Literal["constant", "cosine"] | None  # None: train.schedule
    lambda_c: NonNegativeFloat
    lambda_t: NonNegativeFloat
    lambda_tc: NonNegativeFloat
    lambda_g: NonNegativeFloat
    lambda_m: NonNegativeFloat
    lambda_l1: NonNegativeFloat
    lambda_off: NonNegativeFloat


class AugmentConfig(Section):
    crop_scale: Annotated[float, Field(gt=0, le=1)]
    flip: bool


class TrainConfig(Section):
    auto_image_sizes: Annotated[list[Annotated[int, Field(ge=32)]], Field(min_length=1)]
    trunk: Literal["frozen", "finetune"]
    tuned_blocks: NonNegativeInt
    tuned_lr_scale: PositiveFloat
    batch_norm: Literal["frozen", "train"]
    validation: CountOrFraction
    negatives: Literal["random", "semihard", "hardest"]
    workers: PositiveInt
    use_gpu: bool
    cpus_per_worker: PositiveFloat
    batch_size: Annotated[int, Field(ge=2)]
    momentum: Annotated[float, Field(ge=0, lt=1)]
    weight_decay: NonNegativeFloat
    label_smoothing: Annotated[float, Field(ge=0, lt=1)]
    schedule: Literal["constant", "cosine"]
    checkpoints_to_keep: PositiveInt
    max_failures: Annotated[int, Field(ge=-1)]
    shuffle_buffer: NonNegativeInt
    global_batch: Annotated[int, Field(ge=2)]
    seed: int
    probe_expert: bool
    epochs_for_images: PositiveInt | None  # None: the epochs as given (fsnet/stage_epochs.py)
    augment: AugmentConfig
    stage1: StageConfig
    stage2: StageConfig
    stage3: StageConfig
    adde: StageConfig


class IndexConfig(Section):
    kind: Literal["flat", "ivf", "hnsw", "ivfpq"]
    batch_size: PositiveInt
    actors: PositiveInt | None
    in_process_max: NonNegativeInt
    gpu_decode: bool


class EvalConfig(Section):
    k_max: PositiveInt
    query_chunk: PositiveInt
    at_once: PositiveInt
    baselines: list[Literal["attribute_only", "attr_logp", "probe", "probe_attributes"]]
    protocol: Literal["auto", "generated", "catalog"]
    resamples: NonNegativeInt
    confidence: Annotated[float, Field(gt=0, lt=1)]
    bootstrap_seed: int


class GateConfig(Section):
    k: PositiveInt
    tolerance: Annotated[float, Field(ge=0, le=1)]
    method: str | None
    baselines: bool


class ProbeConfig(Section):
    image_size: Annotated[int, Field(ge=32)] | None
    regularization: list[PositiveFloat] = Field(min_length=1)


class CacheConfig(Section):
    trunk: str | None


class ReportConfig(Section):
    examples: NonNegativeInt


class RayConfig(Section):
    address: str | None
    num_cpus: PositiveInt | None
    start_timeout_s: PositiveFloat
    dashboard: bool | None
    progress_bars: bool
    parquet_datasource_v2: bool


class Config(Section):
    storage: StorageConfig
    source: SourceConfig
    catalog: CatalogConfig
    split: SplitConfig
    synthetic: SyntheticConfig
    model: ModelConfig
    train: TrainConfig
    index: IndexConfig
    eval: EvalConfig
    gate: GateConfig
    probe: ProbeConfig
    cache: CacheConfig
    report: ReportConfig
    ray: RayConfig


# (origin, dotted key, value): origin is what the error message names ("--set a.b=c", "--source").
Override = tuple[str, str, Any]


def load_config(
    presets: Sequence[str | Path] = (),
    sets: Iterable[str] = (),
    options: Iterable[Override] = (),
) -> Config:
    """Resolve default.yaml <- presets <- options <- --set strings into a validated Config."""
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    _merge(data, origins, _read_yaml(DEFAULT_FILE), _display(DEFAULT_FILE), Config, "")
    for preset in presets:
        path = resolve_preset(preset)
        shown = str(preset) if path == Path(preset) else _display(path)  # a file: as the user wrote it
        for layer, origin in preset_layers(path, shown):
            _merge(data, origins, layer, origin, Config, "")
    for origin, key, value in [*options, *(parse_set(s) for s in sets)]:
        _merge(data, origins, _nest(key, value), origin, Config, "")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_explain(err, origins)) from None


def parse_set(text: str) -> Override:
    """``a.b=c`` -> ("--set a.b=c", "a.b", yaml-parsed c). ``a.b=`` sets null."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set model.backbone=tiny")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    key = key.strip()
    shown = f"{key}={REDACTED}" if key in SECRET_KEYS else text
    return (f"--set {shown}", key, value)


BASE_KEY = "base"  # a preset's key naming the preset(s) it inherits from: their keys first, its own over them


def preset_layers(path: Path, shown: str, chain: tuple[Path, ...] = ()) -> list[tuple[dict[str, Any], str]]:
    """A preset file as the (mapping, origin) layers it stands for, in merge order: the presets its ``base:`` names
    (a name, a path relative to it, or a list of them; each with its own bases first), then its own keys. So one
    recipe change is made in one file and the presets built on it follow. A base that leads back to the file is
    one error naming the chain."""
    if path.resolve() in chain:
        loop = " -> ".join(_display(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{shown}: its base presets lead back to it ({loop})")
    data = _read_yaml(path, shown)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError(f"{shown}: '{BASE_KEY}' names a preset or a list of presets, not {bases!r}")
    layers: list[tuple[dict[str, Any], str]] = []
    for base in bases:
        beside = path.parent / base
        base_path = beside if beside.is_file() else resolve_preset(base, origin=f"{shown}: {BASE_KEY}: {base}")
        layers += preset_layers(base_path, _display(base_path), (*chain, path.resolve()))
    return [*layers, (data, shown)]


def resolve_preset(preset: str | Path, origin: str | None = None) -> Path:
    path = Path(preset)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{preset}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    where = origin or f"--config {preset}"
    raise ConfigError(f"{where}: no such file and no preset of that name (presets: {', '.join(known)})")


def config_dict(cfg: Config, secrets: Literal["redact", "drop"] = "redact") -> dict[str, Any]:
    """The config as plain data; secrets become '**********' (set) or null (``drop``, for saved files)."""

    def clean(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return REDACTED if secrets == "redact" else None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(cfg.model_dump(mode="python"))


def dump_config(cfg: Config, secrets: Literal["redact", "drop"] = "redact") -> str:
    return yaml.safe_dump(config_dict(cfg, secrets), sort_keys=False)


def saved_config_text(cfg: Config) -> str:
    """What is written as ``config.yaml`` beside every output: resolved, credentials removed."""
    header = "# fsnet resolved config (credentials removed: they come from the environment or --set)\n"
    return header + dump_config(cfg, secrets="drop")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error: the plain loader keeps
    the second silently (``model:`` twice in a preset would drop the first section without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=True)
            mark = key_node.start_mark
            if isinstance(key, Hashable) and key in seen:
                raise _DuplicateKey(
                    f":{mark.line + 1}:{mark.column + 1}: key '{key}' written twice (first at line {seen[key]}); "
                    "keep one"
                )
            if isinstance(key, Hashable):
                seen[key] = mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    """Message: ":line:column: what", to follow the file's name."""


def _read_yaml(path: Path, shown: str | None = None) -> dict[str, Any]:
    """A config file's mapping; every way it can be unreadable is one ConfigError naming the file (``shown``: how
    messages name it) and, for YAML, the line and column."""
    shown = shown or _display(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{shown}:{line}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "a config file is YAML text"
        ) from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot be read ({err.strerror or err})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except _DuplicateKey as err:
        raise ConfigError(f"{shown}{err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = " ".join(part for part in (err.problem, f"({err.context})" if err.context else None) if part)
        raise ConfigError(f"{shown}{where}: not valid YAML: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{shown}: not valid YAML: {' '.join(str(err).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: expected a mapping of sections at the top level")
    return data


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _nest(key: str, value: Any) -> dict[str, Any]:
    parts = key.split(".")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def _section_type(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = model.model_fields[key].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _merge(
    into: dict[str, Any],
    origins: dict[str, str],
    new: dict[str, Any],
    origin: str,
    model: type[BaseModel],
    prefix: str,
) -> None:
    """Deep-merge ``new`` into ``into`` checking every key against ``model``; record who set each leaf."""
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if key not in model.model_fields:
            known = ", ".join(model.model_fields)
            where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
            raise ConfigError(f"{origin}: unknown key '{dotted}' (known {where}: {known})")
        section = _section_type(model, key)
        if section is None:
            into[key] = value
            origins[dotted] = origin
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: '{dotted}' is a section; expected a mapping, got {value!r}")
        _merge(into.setdefault(key, {}), origins, value, origin, section, f"{dotted}.")


def _explain(err: ValidationError, origins: dict[str, str]) -> str:
    messages: dict[str, list[str]] = {}
    inputs: dict[str, Any] = {}
    for e in err.errors():
        dotted = _key_path(e["loc"])
        messages.setdefault(dotted, [])
        if e["msg"] not in messages[dotted]:
            messages[dotted].append(e["msg"])
        if e["type"] != "missing":
            inputs[dotted] = e.get("input")
    lines = []
    for dotted, msgs in messages.items():
        got = f" (got {inputs[dotted]!r})" if dotted in inputs and dotted not in SECRET_KEYS else ""
        lines.append(f"{_origin_of(dotted, origins)}: {dotted}: {' or '.join(msgs)}{got}")
    return "; ".join(lines)


def _key_path(loc: tuple[Any, ...]) -> str:
    """Config keys of a pydantic error location, without the type tags that unions add."""
    parts: list[str] = []
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif model is not None and part in model.model_fields:
            parts.append(part)
            model = _section_type(model, part)
        else:
            break
    return ".".join(parts)


def _origin_of(dotted: str, origins: dict[str, str]) -> str:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        found = origins.get(".".join(parts[:n]))
        if found:
            return found
    return _display(DEFAULT_FILE)
