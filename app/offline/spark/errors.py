"""Turn a failed Spark job into the project's error: a row problem found on an executor stays readable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ArtifactError, FusionrankError

__all__ = ["spark_errors"]

# An executor's ArtifactError reaches the driver as text inside a PythonException: "...ArtifactError: <message>".
_EXECUTOR_ERROR = re.compile(r"(?:ArtifactError|LogError|PolicyError): (.+)")


@contextmanager
def spark_errors(origin: str) -> Iterator[None]:
    """Re-raise a Spark job failure as an ArtifactError naming the input (and the executor's message)."""
    try:
        yield
    except FusionrankError:
        raise
    except Exception as exc:  # Py4JJavaError, PythonException, SparkRuntimeException...
        text = str(exc)
        found = _EXECUTOR_ERROR.findall(text)
        if found:
            raise ArtifactError(origin, "", found[-1].strip(), "fix the input rows named above") from None
        raise ArtifactError(origin, "", f"the Spark job failed: {text.strip().splitlines()[0][:500]}",
                            "see the Spark driver log") from None
