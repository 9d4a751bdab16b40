"""A typed Python client of the fusionrank HTTP API (needs httpx only: `pip install 'fusionrank[client]'`).

    from app.client import FusionrankClient

    with FusionrankClient("http://127.0.0.1:8000", deadline=0.5) as client:
        result = client.score("home", candidates, context={"user_id": "u1"}, format="arrow")
        print(result.ids[:3], result.versions.policy_version)

Sync (`FusionrankClient`) and async (`AsyncFusionrankClient`) with the same methods; bodies as row
JSON, column JSON or Arrow from dicts, a pandas DataFrame or a pyarrow Table; retries on 503 and
connection failures honouring `Retry-After`; a per-call deadline sent as `X-Request-Deadline-Ms`.
Importing it loads neither the server nor numpy, pandas, pyarrow or torch.
"""

from app.client.aio import AsyncFusionrankClient
from app.client.bodies import BodyFormat
from app.client.errors import APIError, ClientError, ConnectionFailed, DeadlineExceeded, ErrorDetail, Unavailable
from app.client.results import (
    Arm,
    CandidateDebug,
    Feature,
    FilteredCandidate,
    RankedCandidate,
    ScoreResult,
    Surface,
    UtilityTerm,
    Versions,
)
from app.client.retry import RetryPolicy
from app.client.sync import FusionrankClient

__all__ = [
    "APIError",
    "Arm",
    "AsyncFusionrankClient",
    "BodyFormat",
    "CandidateDebug",
    "ClientError",
    "ConnectionFailed",
    "DeadlineExceeded",
    "ErrorDetail",
    "Feature",
    "FilteredCandidate",
    "FusionrankClient",
    "RankedCandidate",
    "RetryPolicy",
    "ScoreResult",
    "Surface",
    "Unavailable",
    "UtilityTerm",
    "Versions",
]
