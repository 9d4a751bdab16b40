"""Service settings from the environment (prefix ``FUSIONRANK_``), built in lifespan, never at import."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "is_uri"]

_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,63}$")
_MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="FUSIONRANK_", extra="forbid", frozen=True)

    # Required on purpose: a service that silently serves from the wrong folder is worse than one
    # that refuses to start. `fusionrank serve` fills both from its options.
    # Either may be an object-store URI (s3://bucket/prefix, gs://...; the `store` extra): the service then
    # serves a mirror of it in `store_cache` (app/control/remote_store.py), and this field holds the mirror.
    model_store: Path = Field(description="Folder (or s3:// / gs:// URI) of model bundles: <model>/<version>/.")
    policies: Path = Field(description="Folder (or URI) of policies: <surface>/<version>.yaml and <surface>/active.")
    store_cache: Path | None = Field(
        default=None, description="Local folder of the mirrors of a model store or policies given as a URI"
        " (an emptyDir in Kubernetes): <store_cache>/model_store and <store_cache>/policies. Required with a URI.",
    )
    model_store_uri: str | None = Field(
        default=None, description="Set from FUSIONRANK_MODEL_STORE when that is a URI (the field then holds the"
        " local mirror); see docs/scaling.md \"Store backends\".",
    )
    policies_uri: str | None = Field(
        default=None, description="Set from FUSIONRANK_POLICIES when that is a URI (the field then holds the"
        " local mirror).",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # onnxruntime threads per session. One keeps a 2-core replica predictable under concurrency.
    ort_intra_op_threads: int = Field(default=1, ge=0, le=64)
    # Score on the event loop, one request per pass of the loop in arrival order, the loop reading its
    # sockets between two requests. On 2 quiet cores this beat worker threads at concurrency 8 by
    # 6-36 % requests/s (every body format, both bench models) at lower CPU per request, and accepted
    # 25 % more at the same overload (twice the loop's saturation offered to both): a scoring thread
    # and the loop reading the next bodies fight for the GIL (docs/performance.md). True: score on
    # `score_threads` worker threads instead (a model whose onnxruntime time dominates may gain).
    score_in_thread: bool = False
    # With score_in_thread: threads scoring at once; admitted requests beyond them wait in line
    # (max_in_flight bounds the line). More threads only contend for the GIL with the event loop, which
    # then reads and sheds requests late: 2 against anyio's default 40, at 2x saturation on 2 shared
    # cores: +30 % accepted requests/s, p99 26 vs 57 ms, 503 p50 0.5 vs 1.4 ms (bench/RESULTS.md).
    score_threads: int = Field(default=2, ge=1, le=64)
    max_candidates: int = Field(default=5000, ge=1)
    # Largest body (any format). A row-JSON candidate of the shipped demo bundle is ~300 bytes
    # (5000 candidates: 1.5 MB compact, 2.3 MB indented); parsing JSON takes up to ~28 bytes of
    # memory per body byte (app.protocol.cost.PARSE_AMPLIFICATION), so 4 MiB costs at most ~110 MB.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Arrow bodies: most bytes a stream may take once decompressed and converted, checked from its
    # metadata before anything is decompressed. None: 8 x max_body_bytes.
    max_decoded_bytes: int | None = Field(default=None, ge=1024)
    # Admin API bearer tokens. Named tokens (JSON: {"alice": "<secret>"}) let the audit log say who
    # made a change; `admin_token` alone is the token named "admin". None configured: admin API off.
    admin_token: SecretStr | None = None
    # POST /v1/feedback: most outcome events one request may carry (more: 413).
    feedback_max_events: int = Field(default=10_000, ge=1)
    # Served-prediction PSI: recomputed every interval over the last `slots` intervals (15 x 60 s),
    # published once that window holds at least `min_predictions` predictions of a task.
    drift_psi_interval_seconds: float = Field(default=60.0, gt=0)
    drift_psi_window_slots: int = Field(default=15, ge=1, le=10_000)
    drift_psi_min_predictions: int = Field(default=1000, ge=1)
    admin_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # Seconds between two polls of the policies folder; 0 turns the file watcher off.
    policy_watch_interval: float = Field(default=5.0, ge=0, le=3600)
    # Write the active/shadow pointer file when the admin API changes it (if the folder is writable).
    persist_pointers: bool = True
    # Shadow model (POST /admin/surfaces/{s}/shadow-model): sampled requests waiting for the worker
    # thread; a request sampled while the queue is full is dropped and counted, never waited for.
    shadow_model_queue_size: int = Field(default=64, ge=1, le=100_000)
    log_level: str = Field(default="info", description="Level of fusionrank's and uvicorn's loggers (debug, info,"
                           " warning, error).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log line format: `json` (one JSON object per line: time, level, logger, message, request_id and"
        " the record's fields; for a log pipeline), `text` (for a terminal), or `auto`: text when stderr is a"
        " terminal, JSON otherwise (a container, a pipe, a file). See docs/monitoring.md, Logs and traces.",
    )
    access_log_sample_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of HTTP requests that get an access line (logger fusionrank.access: method, route,"
        " status, latency_ms, request_id; for /v1/score also candidates, versions and arm). 0: no access log;"
        " 1: every request; 0.01: one in a hundred, at random.",
    )
    # Load shedding: work requests (/v1/score, /v1/feedback) running at once; one more is answered
    # 503 + Retry-After at once. 0: no limit. See app/api/limits.py.
    max_in_flight: int = Field(default=64, ge=0, le=100_000)
    # Deadline of a work request in seconds (504 and the work abandoned past it); 0: none. A caller
    # can shorten it per request with `X-Request-Deadline-Ms`.
    request_deadline_seconds: float = Field(default=0.0, ge=0, le=3600)
    memory_budget_bytes: int = Field(
        default=640 * 1024 * 1024, ge=0,
        description="Memory budget of admitted work, in bytes: the sum, over the work requests being read and"
        " parsed, of body bytes x the parse amplification of their format (JSON 28x, Arrow 13x; app/protocol/cost.py)"
        " stays under it. Beyond it a request is answered 503 + Retry-After before its body is parsed (413 when"
        " its body alone costs more than the whole budget). Set it from the pod's memory limit: the limit minus"
        " the replica's idle RSS (~200 MB with the demo bundle) minus ~20 % headroom for what it does not count"
        " (answers, allocator slack); the shipped limit of 1 GiB gives 640 MiB. 0: no budget.",
    )
    body_read_timeout_seconds: float = Field(
        default=10.0, ge=0, le=3600,
        description="A work request's body must arrive whole within this many seconds of its headers (408 and"
        " the connection closed past it): a slow uploader holds its memory reservation for a bounded time."
        " 0: no limit.",
    )
    body_min_bytes_per_second: int = Field(
        default=65_536, ge=0,
        description="After its first second, a work request's body must arrive at this average rate at least"
        " (408 and the connection closed below it): a 1 byte/s uploader is cut after ~1 s. A body being"
        " uploaded never holds one of the max_in_flight slots. 0: no minimum.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, le=1024 * 1024,
        description="Most bytes of request line + headers in one request: more is answered 431 and the"
        " connection closed before the headers are kept (the HTTP protocol of `fusionrank serve`).",
    )
    header_read_timeout_seconds: float = Field(
        default=10.0, ge=0, le=3600,
        description="A connection must send a request's complete headers within this many seconds of opening,"
        " or of the request's first byte: past it 408 and the connection closed (slow-header clients). 0: none.",
    )
    ready_saturated_seconds: float = Field(
        default=5.0, ge=0, le=3600,
        description="/readyz answers 503 (status \"saturated\") once the replica has turned away every work"
        " request, admitting or finishing none, for this many seconds: it cannot take work. 0: never.",
    )
    # SIGTERM: /readyz answers 503 for `drain` seconds while requests are still served, then uvicorn
    # stops accepting, closes the connections still uploading a body, and gives the requests in flight
    # up to `grace` seconds (app/api/shutdown.py).
    shutdown_drain_seconds: float = Field(default=2.0, ge=0, le=300)
    shutdown_grace_seconds: int = Field(default=20, ge=0, le=3600)
    # Feedback de-duplication per replica: an event id counted within the last `window` ids and
    # `seconds` is not counted again (a retried batch counts once). 0 ids: off.
    feedback_dedup_ids: int = Field(default=100_000, ge=0, le=10_000_000)
    feedback_dedup_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)
    explain_page: bool = Field(
        default=False,
        description="Serve `GET /explain`, a page that sends a request with `options.debug` and draws each"
        " candidate's utility terms, the filtered candidates and each surface's rollout state (behind the"
        " admin token when one is set). Off by default: it is an operator's tool.",
    )

    @model_validator(mode="before")
    @classmethod
    def _mirror_uris(cls, data: Any) -> Any:
        """A model store or policies URI: keep it in `<field>_uri`, serve its mirror under `store_cache`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("model_store", "policies"):
            value = data.get(name)
            if isinstance(value, str) and is_uri(value):
                cache = data.get("store_cache")
                if not cache:
                    raise ValueError(
                        f"FUSIONRANK_{name.upper()} is a URI ({value}): FUSIONRANK_STORE_CACHE must name a local"
                        " folder for its mirror (fix: e.g. FUSIONRANK_STORE_CACHE=/var/cache/fusionrank)"
                    )
                data[f"{name}_uri"] = value
                data[name] = Path(cache) / name
        return data

    served_log: str = Field(
        default="",
        description="Served log: surfaces to log and the share of their requests, as `surface:rate` pairs"
        " separated by commas, e.g. `home:0.1,search:1.0` (`*:rate` for every other surface). A request is"
        " logged when a hash of its request_id is below the rate, so a request is logged on every replica or"
        " none. Empty: off. Needs served_log_path. See docs/served-log.md.",
    )
    served_log_path: str = Field(
        default="",
        description="Where the served and outcomes logs go: a local folder or a URI pyarrow or fsspec opens"
        " (s3://bucket/prefix, gs://...). Files land under served/surface=/date=/hour=/ and outcomes/date=/hour=/.",
    )
    served_log_features: bool = Field(
        default=False,
        description="Also log, per candidate, the features the model saw (numeric and categorical, after the"
        " context and default fallback): what `fusionrank train` on the joined log trains on. Costs more.",
    )
    served_log_queue_size: int = Field(
        default=256, ge=1, le=100_000,
        description="Logged requests (and feedback batches) waiting for the writer thread: bounds the memory"
        " the log may hold. A request logged while it is full is dropped and counted"
        " (fusionrank_log_dropped_requests), never waited for.",
    )
    served_log_rotate_bytes: int = Field(
        default=128 * 1024 * 1024, ge=1024,
        description="Close a log file (and rename it to its final name) once it holds about this many bytes.",
    )
    served_log_rotate_seconds: float = Field(
        default=300.0, gt=0, le=86_400,
        description="Close a log file once it has been open this many seconds: a reader sees a request's rows"
        " at most this long after it was served. Rows in the open file are lost if the process is killed.",
    )

    @field_validator("served_log")
    @classmethod
    def _served_log_rates(cls, value: str) -> str:
        _parse_rates(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < _MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token is shorter than {_MIN_TOKEN_LENGTH} characters")
        return token

    @field_validator("admin_tokens")
    @classmethod
    def _named_tokens(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in tokens.items():
            if not _TOKEN_NAME.match(name):
                raise ValueError(f"admin token name {name!r} must match {_TOKEN_NAME.pattern}")
            if len(token.get_secret_value()) < _MIN_TOKEN_LENGTH:
                raise ValueError(f"admin token {name!r} is shorter than {_MIN_TOKEN_LENGTH} characters")
        return tokens

    def decoded_bytes_limit(self) -> int:
        """`max_decoded_bytes`, or 8 x `max_body_bytes` when unset."""
        return self.max_decoded_bytes if self.max_decoded_bytes is not None else 8 * self.max_body_bytes

    def served_log_rates(self) -> dict[str, float]:
        """Surface (or "*") -> share of its requests to log; empty when the served log is off."""
        return _parse_rates(self.served_log) if self.served_log_path else {}

    def admin_credentials(self) -> dict[str, SecretStr]:
        """Token name -> secret, `admin_token` included as "admin"; empty when the admin API is off."""
        named = dict(self.admin_tokens)
        if self.admin_token is not None:
            named.setdefault("admin", self.admin_token)
        return named


def _parse_rates(value: str) -> dict[str, float]:
    """`home:0.1,search:1.0` -> {"home": 0.1, "search": 1.0}; a bad pair raises ValueError naming it."""
    rates: dict[str, float] = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        surface, sep, rate = pair.rpartition(":")
        try:
            share = float(rate)
        except ValueError:
            share = -1.0
        if not sep or not surface or not 0.0 <= share <= 1.0:
            raise ValueError(f"served_log pair {pair!r} must be surface:rate with a rate in [0, 1], e.g. home:0.1")
        rates[surface.strip()] = share
    return rates


def is_uri(value: str | Path) -> bool:
    """True for `scheme://...` (s3://, gs://, memory://), False for a local path."""
    scheme, sep, _ = str(value).partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def get_settings() -> Settings:
    """Read settings from the environment now (not at import time)."""
    return Settings()  # required fields come from the environment
