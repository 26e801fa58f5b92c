"""The one configuration model, decoded from config.yaml and the environment.

Every setting lives in a frozen msgspec Struct that forbids unknown fields, so a
mistyped key fails at start with its path (``$.kafka.linger_ms``) and the reason.
Any setting can be overridden from the environment: ``STREAMER_`` then the path
in upper case with ``__`` between levels, the value parsed as YAML
(``STREAMER_KAFKA__BOOTSTRAP_SERVERS=broker:9092``, ``STREAMER_BATCH__INTERVAL_MS=100``).
Any other ``STREAMER_*`` variable (but the credentials ``kafka.sasl_*_env`` name) is an
error naming it, and an error in a value set from the environment names its variable.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import yaml

from streamer.errors import ConfigError
from streamer.tickfile import DEFAULT_MAX_BAD_SHARE, DEFAULT_MAX_LINE_BYTES
from streamer.types import ModelName

ENV_PREFIX = "STREAMER_"
EMBEDDED = "embedded"
REPLAY = "replay"
BUNDLED = "bundled"

VenueName = Literal["deribit", "okx", "bybit", "binance"]
#: Options a venue session subscribes to per currency, at most (streamer.sources.listing).
DEFAULT_MAX_INSTRUMENTS = 5_000


#: Bounds that msgspec checks at decode, with the path of a value outside them.
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]


class ConfigBase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section: frozen, keyword-only, unknown keys an error.

    Unknown keys are refused by inheritance. Each section says ``frozen`` again for the
    type checker (msgspec's dataclass transform reads it per class) and ``kw_only`` for
    msgspec, which applies it to the fields of the class that says it."""


class VenueConfigBase(ConfigBase, frozen=True, kw_only=True, tag_field="name"):
    """One exchange connection: what every venue has. ``name`` (the tag) picks the venue's
    own class below, so a key that venue has no use for is an unknown field."""

    name: ClassVar[VenueName]
    #: Whether every quote's ``underlying_price`` is the forward the venue computes its
    #: IVs on (Deribit's future or ``SYN.`` index, OKX's ``fwdPx``, Bybit's
    #: ``underlyingPrice``); Binance sends an index only.
    publishes_forward: ClassVar[bool] = True
    url: str = REPLAY
    currencies: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)] = ("BTC", "ETH")
    heartbeat_s: PositiveInt = 10  # Deribit requires >= 10
    # None: the venue's own (Deribit 250 channels at 3 requests/s, Bybit 100 at 5/s, ...)
    subscribe_batch: PositiveInt | None = None
    requests_per_s: PositiveFloat | None = None


#: Options subscribed per currency at most (Deribit, Bybit and OKX; Binance streams per
#: underlying); past it the nearest expiries are kept, the rest counted as ``instrument_cap``.
MaxInstruments = PositiveInt


class DeribitConfig(VenueConfigBase, frozen=True, kw_only=True, tag="deribit"):
    """A Deribit connection: ticker interval, instrument refresh, instrument cap."""

    name: ClassVar[Literal["deribit"]] = "deribit"
    interval: Literal["100ms", "agg2"] = "100ms"
    refresh_instruments_s: PositiveFloat = 600.0
    max_instruments: MaxInstruments = DEFAULT_MAX_INSTRUMENTS


class OkxConfig(VenueConfigBase, frozen=True, kw_only=True, tag="okx"):
    """An OKX connection (its summaries list new options: no instrument refresh)."""

    name: ClassVar[Literal["okx"]] = "okx"
    max_instruments: MaxInstruments = DEFAULT_MAX_INSTRUMENTS


class BybitConfig(VenueConfigBase, frozen=True, kw_only=True, tag="bybit"):
    """A Bybit connection: instruments listed over REST (``rest_url``) and refreshed."""

    name: ClassVar[Literal["bybit"]] = "bybit"
    refresh_instruments_s: PositiveFloat = 600.0
    max_instruments: MaxInstruments = DEFAULT_MAX_INSTRUMENTS
    rest_url: str | None = None


class BinanceConfig(VenueConfigBase, frozen=True, kw_only=True, tag="binance"):
    """A Binance connection (one stream per underlying: no listing, no cap)."""

    name: ClassVar[Literal["binance"]] = "binance"
    publishes_forward: ClassVar[bool] = False


#: One exchange connection, of whichever venue ``name`` says (a tagged union).
VenueConfig = DeribitConfig | OkxConfig | BybitConfig | BinanceConfig
VENUE_CONFIGS: dict[str, type[VenueConfig]] = {
    kind.name: kind for kind in (DeribitConfig, OkxConfig, BybitConfig, BinanceConfig)}


def publishes_forward(name: str) -> bool:
    """Whether venue ``name``'s quotes carry the forward its IVs are computed on."""
    kind = VENUE_CONFIGS.get(name)
    return kind is not None and kind.publishes_forward


def venue_config(name: VenueName, **settings: Any) -> VenueConfig:
    """The config of a ``name`` venue connection, the settings not given at their defaults."""
    try:
        kind = VENUE_CONFIGS[name]
    except KeyError:
        raise ConfigError(f"unknown venue {name!r}; expected one of {sorted(VENUE_CONFIGS)}"
                          ) from None
    return kind(**settings)


class ReplayConfig(ConfigBase, frozen=True, kw_only=True):
    """The local replay servers, one per venue whose url is ``replay``.

    A venue plays ``files[venue]`` if named there, else ``file``; ``bundled`` is the
    venue's own bundled recording (streamer/devtools/exchanges.py).
    """

    file: str = BUNDLED
    files: dict[VenueName, str] = msgspec.field(default_factory=dict)
    speed: float = 5.0
    loop: bool = False
    #: ``streamer replay FILE``: processes calibrating the file's underlyings (each in
    #: one; ``auto``, one per core), the same bytes whatever the number
    workers: PositiveInt | Literal["auto"] = "auto"

    def file_for(self, venue: VenueName) -> str:
        """The recording a replayed venue plays: a path or ``bundled``."""
        return self.files.get(venue, self.file)


class TickFileConfig(ConfigBase, frozen=True, kw_only=True):
    """How forgiving reading a recorded tick file is (replay, serve-replay, plot)."""

    #: Bad lines are counted and skipped; past this share of the lines, reading stops.
    max_bad_share: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = DEFAULT_MAX_BAD_SHARE
    #: A longer line is skipped (counted as ``line_too_long``) without being held in memory.
    max_line_bytes: Annotated[int, msgspec.Meta(ge=1024)] = DEFAULT_MAX_LINE_BYTES


#: The built-in limits (where no config is at hand: serve-replay).
TICKFILE_DEFAULTS = TickFileConfig()


class BatchConfig(ConfigBase, frozen=True, kw_only=True):
    """When the calibrator cuts a batch of quotes."""

    interval_ms: int = 250
    max_quotes: PositiveInt = 5000


class CalibrationConfig(ConfigBase, frozen=True, kw_only=True):
    """Model choice, quote filters and fallback rules."""

    model: ModelName = "svi"
    models: dict[str, ModelName] = msgspec.field(default_factory=dict)
    min_quotes: int = 5
    min_quotes_reduced: int = 4
    max_rel_spread: PositiveFloat = 1.0
    stale_after_ms: PositiveInt = 120_000
    max_rmse_vol: PositiveFloat = 0.05
    #: Each expiry's forward: ``venue``, the one the venue computes its IVs on where it
    #: publishes it (else put-call parity); ``parity``, always from the expiry's call-put
    #: pairs. On the real Deribit chains the parity forward of tick-rounded coin prices
    #: sits up to 0.45 vol points off Deribit's own IVs at a strike.
    forward: Literal["venue", "parity"] = "venue"
    #: A fit whose ATM vol is further than this (decimal vol) and than the half spread
    #: from the quotes' own ATM is refused (``atm_off_market``).
    max_atm_error_vol: PositiveFloat = 0.03
    rmse_jump_factor: Annotated[float, msgspec.Meta(ge=1.0)] = 4.0
    budget_ms: PositiveFloat = 100.0
    surface_budget_ms: PositiveFloat = 1500.0
    warm_restart: bool = True
    #: Where `streamer run` cuts batches: a worker process (the event loop never waits
    #: for a fit, nor shares its GIL: event-loop lag p99 3.9 ms against 21.8 on a thread,
    #: benchmarks/bench_pipeline_service.py), a worker thread, or inline on the event loop.
    worker: Literal["thread", "inline", "process"] = "process"
    #: Niceness added to the worker process (0-19): fits yield the CPU to ingest and sends.
    worker_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10


class KafkaConfig(ConfigBase, frozen=True, kw_only=True):
    """Producer and topic settings; secrets come only from the environment."""

    bootstrap_servers: str = EMBEDDED
    #: Port of the embedded broker when it is free (else any free port, printed at start).
    embedded_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9092
    client_id: str = "streamer"
    surface_topic: str = "vol.surface.v1"
    ticks_topic: str = "vol.ticks.v1"
    group_id: str = "streamer-calibrate"
    greeks_topic: str | None = None
    #: Compacted topic of each key's smile-dynamics memory (restored at start and after a
    #: rebalance, as the surfaces are); None: dynamics restart from nothing.
    dynamics_topic: str | None = "vol.dynamics.v1"
    acks: Literal["all", "1", "0"] = "all"
    enable_idempotence: bool | None = None
    #: 0: every sink already gathers a round of records and awaits its acks (the ticks
    #: sink every 20 ms), so a producer linger only delays each round.
    linger_ms: NonNegativeInt = 0
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    value_format: Literal["json", "msgpack"] = "json"
    request_timeout_ms: PositiveInt = 30_000
    retry_backoff_ms: NonNegativeInt = 200
    #: A send unacknowledged this long (a frozen broker) counts as an error and fails /readyz.
    ack_deadline_ms: PositiveInt = 5_000
    #: Stop (and a replay's back-pressure) gives up after this long without an acknowledgement.
    flush_timeout_ms: PositiveInt = 10_000
    #: Split mode: a dead calibrator's partitions move after this long (consumer group).
    #: Below Kafka's default floor of 6 s: a broker that refuses it is joined with 6 s
    #: (sources/ticks_topic.py), one that allows it (Tansu) takes over in ~6 s, not ~9.
    session_timeout_ms: PositiveInt = 4_000
    heartbeat_interval_ms: PositiveInt = 1_000
    #: Split mode: how long a rebalance waits for the members to rejoin.
    rebalance_timeout_ms: PositiveInt = 6_000
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username_env: str = "STREAMER_KAFKA_USERNAME"
    sasl_password_env: str = "STREAMER_KAFKA_PASSWORD"
    ssl_cafile: str | None = None
    create_topics: bool = True
    #: The topics are checked again this often while publishing (a replaced broker).
    topic_check_ms: Annotated[int, msgspec.Meta(gt=0)] = 5_000
    topic_partitions: PositiveInt = 6
    topic_replication_factor: PositiveInt = 1

    @property
    def embedded(self) -> bool:
        """True when the embedded Tansu broker is to be started."""
        return self.bootstrap_servers == EMBEDDED

    @property
    def idempotence(self) -> bool:
        """Idempotent producer: on for a real cluster, off for the embedded broker."""
        if self.enable_idempotence is None:
            return not self.embedded
        return self.enable_idempotence


class MetricsConfig(ConfigBase, frozen=True, kw_only=True):
    """The Prometheus /metrics, /healthz and /readyz HTTP endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9108
    stale_after_s: float = 30.0


class LogConfig(ConfigBase, frozen=True, kw_only=True):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["human", "json"] = "human"


class DynamicsConfig(ConfigBase, frozen=True, kw_only=True):
    """How the smile dynamics are estimated (docs/dynamics.md)."""

    tenor_days: float = 30.0
    #: Tenors of ``Dynamics.by_expiry``; empty for none.
    bucket_days: tuple[float, ...] = (7.0, 30.0, 90.0, 180.0)
    #: Each tenor pools the instruments whose expiry is within this factor of it
    #: (4: a 30-day estimate from the 7.5- to 120-day expiries).
    pool_ratio: Annotated[float, msgspec.Meta(ge=1.0)] = 4.0
    #: Instruments within this many ATM standard deviations (|k| <= n sigma sqrt(t)).
    moneyness_sd: PositiveFloat = 1.0
    #: Observations lose half their weight in this much exchange time.
    half_life_s: PositiveFloat = 1800.0
    #: An instrument's observation waits until its forward has moved this much (log).
    min_move: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    #: A larger move between two quotes of an instrument is a data error or a gap.
    max_move: PositiveFloat = 0.25
    #: Two quotes of an instrument further apart than this make no observation.
    max_gap_s: PositiveFloat = 300.0
    #: An implied vol that moved more than this between two quotes is a bad quote.
    max_iv_move: PositiveFloat = 0.05
    min_obs: int = 30
    max_ci_halfwidth: float = 0.5
    #: Slices in these states carry a fresh fit; fallback and stale ones are skipped.
    statuses: tuple[str, ...] = ("warm", "cold")


class ClockEventConfig(ConfigBase, frozen=True, kw_only=True):
    """A listed event: extra variance, in days of average variance, at ``at`` (ISO-8601)."""

    at: str
    extra_days: Annotated[float, msgspec.Meta(ge=0.0)]


class AnalyticsConfig(ConfigBase, frozen=True, kw_only=True):
    """Constant-maturity views, the variance index and the variance clock (README)."""

    #: Constant maturities of ``SurfaceUpdate.tenors``, days.
    tenor_days: tuple[PositiveFloat, ...] = (
        1.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0)
    #: Tenor of ``SurfaceUpdate.variance_index`` (the Cboe VIX method), days.
    variance_index_days: PositiveFloat = 30.0
    #: Variance carried by each UTC weekday, Monday first (normalised to a 7-day week);
    #: e.g. weekends at 0.6. All 1 (the default) is calendar time.
    weekday_weights: Annotated[tuple[PositiveFloat, ...],
                               msgspec.Meta(min_length=7, max_length=7)] = (1.0,) * 7
    #: Events with extra variance (used for interpolation between expiries and tenor t).
    events: tuple[ClockEventConfig, ...] = ()


class AppConfig(ConfigBase, frozen=True, kw_only=True):
    """The whole configuration."""

    venues: tuple[VenueConfig, ...] = (DeribitConfig(),)
    replay: ReplayConfig = ReplayConfig()
    tickfile: TickFileConfig = TickFileConfig()
    batch: BatchConfig = BatchConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    kafka: KafkaConfig = KafkaConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    sink: Literal["kafka", "stdout"] = "kafka"


def _apply_env(tree: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Write the ``STREAMER_*`` settings of ``env`` into ``tree``.

    Returns the variable behind each path set (``$.batch.interval_ms`` →
    ``STREAMER_BATCH__INTERVAL_MS``), so errors name the variable. A ``STREAMER_*``
    variable that is neither a setting nor a credential named by the config is an
    error naming it: a typo must not be silently ignored.
    """
    credentials = _credential_variables(tree)
    origins: dict[str, str] = {}
    unknown: list[str] = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in credentials:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        problem = _setting_problem(path)
        if problem is not None:
            unknown.append(f"{name} ({problem})")
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: `{part}` is not a section "
                                  "in the config file")
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {name}: not a YAML value: {exc}") from exc
        origins["$." + ".".join(path)] = name
    if unknown:
        raise ConfigError("unknown environment variable(s): " + "; ".join(unknown) +
                          f". Settings are {ENV_PREFIX}<SECTION>__<KEY> (two underscores "
                          f"between levels), e.g. {ENV_PREFIX}BATCH__INTERVAL_MS")
    return origins


def _credential_variables(tree: dict[str, Any]) -> set[str]:
    """The variables the config names for secrets (they are read, not settings)."""
    kafka = tree.get("kafka") if isinstance(tree.get("kafka"), dict) else {}
    assert isinstance(kafka, dict)
    defaults = KafkaConfig()
    return {str(kafka.get("sasl_username_env", defaults.sasl_username_env)),
            str(kafka.get("sasl_password_env", defaults.sasl_password_env)),
            defaults.sasl_username_env, defaults.sasl_password_env}


def _setting_problem(path: list[str]) -> str | None:
    """Why ``path`` names no setting (None: it does), with a suggestion."""
    struct: Any = AppConfig
    for depth, part in enumerate(path):
        fields = {f.name: f.type for f in msgspec.structs.fields(struct)}
        if part not in fields:
            where = "section" if depth == 0 else f"key of {'.'.join(path[:depth])}"
            return f"no {where} `{part}`" + _did_you_mean(path, depth, fields)
        kind = fields[part]
        if depth == len(path) - 1:
            return None
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            struct = kind
        elif getattr(kind, "__origin__", None) is dict and depth == len(path) - 2:
            return None  # a map's entry: STREAMER_CALIBRATION__MODELS__ETH
        else:
            return f"`{'.'.join(path[:depth + 1])}` has no keys"
    return None


def _did_you_mean(path: list[str], depth: int, fields: Mapping[str, Any]) -> str:
    part = path[depth]
    # One underscore where two belong: STREAMER_KAFKA_BOOTSTRAP_SERVERS.
    for name in fields:
        if part.startswith(name + "_"):
            fixed = [*path[:depth], name, part[len(name) + 1:], *path[depth + 1:]]
            if _setting_problem(fixed) is None:
                return f"; did you mean {ENV_PREFIX}{'__'.join(fixed).upper()}?"
    close = difflib.get_close_matches(part, list(fields), n=1)
    if close:
        fixed = [*path[:depth], close[0], *path[depth + 1:]]
        if _setting_problem(fixed) is None:
            return f"; did you mean {ENV_PREFIX}{'__'.join(fixed).upper()}?"
    return ""


def _name_variables(message: str, origins: Mapping[str, str]) -> str:
    """Append the environment variable(s) behind the paths a message names."""
    named = sorted({name for path, name in origins.items()
                    if f"`{path}`" in message or f"`{path}[" in message or f"`{path}." in message
                    or f" {path[2:]} " in f" {message} "})
    return message + (f" (from environment variable {', '.join(named)})" if named else "")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None
                ) -> AppConfig:
    """Read config.yaml (or defaults when ``path`` is None), apply env overrides, validate.

    Raises
    ------
    ConfigError
        With the key's path and the reason, for unknown keys and bad values.
    """
    tree: Any = {}
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping")
    origins = _apply_env(tree, os.environ if env is None else env)
    _name_unnamed_venues(tree)
    try:
        config = msgspec.convert(tree, AppConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_name_variables(f"config error: {exc}", origins)) from exc
    try:
        _check(config)
    except ConfigError as exc:
        raise ConfigError(_name_variables(str(exc), origins)) from exc
    return config


def _name_unnamed_venues(tree: dict[str, Any]) -> None:
    """A venue entry without ``name`` is Deribit, as it always was (msgspec cannot default a
    union's tag)."""
    venues = tree.get("venues")
    if isinstance(venues, list):
        for venue in venues:
            if isinstance(venue, dict):
                venue.setdefault("name", DeribitConfig.name)


def _check(config: AppConfig) -> None:
    """Rules a field's ``msgspec.Meta`` cannot express (across fields, or with the reason
    said), and the batch interval and replay speed, so that a config wrong in both is told
    both at once (msgspec stops at the first)."""
    problems: list[str] = []
    if config.batch.interval_ms <= 0:
        problems.append("batch.interval_ms must be > 0")
    if config.replay.speed <= 0:
        problems.append("replay.speed must be > 0")
    if config.calibration.min_quotes < 5:
        problems.append("calibration.min_quotes must be >= 5 (SVI has 5 parameters)")
    if not 3 <= config.calibration.min_quotes_reduced <= config.calibration.min_quotes:
        problems.append("calibration.min_quotes_reduced must be within 3..min_quotes "
                        "(the reduced smile has 3 parameters)")
    problems += _check_replay_files(config)
    if problems:
        raise ConfigError("config error: " + "; ".join(problems))


def _check_replay_files(config: AppConfig) -> list[str]:
    """One recording is one venue's messages: ``replay.file`` may serve only one venue."""
    replayed = {v.name for v in config.venues if v.url == REPLAY}
    sharing = sorted(replayed - config.replay.files.keys())
    if config.replay.file == BUNDLED or len(sharing) < 2:
        return []
    return [f"replay.file is one recording but venues {', '.join(sharing)} replay it: "
            "name each venue's recording in replay.files (or `bundled`)"]
