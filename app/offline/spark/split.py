"""The hold-out split of `calibrate fit` as native Spark columns: SplitMix64 of the key, as on one machine.

`app.offline.calibration.collect.holdout_mask` holds a row out when SplitMix64(key) / 2**64 <
fraction, in wrapping uint64 arithmetic. Spark's longs are signed and, with ANSI mode on (the default
since Spark 4), an overflowing `*` or `+` fails the job, so the 64-bit products are built from 16-bit
limbs: every partial product and carry stays below 2**35, and the limbs are reassembled with shifts
and ORs, which never overflow. The result is bit for bit the numpy one, for every key, with no Python
on the executors (a Python UDF for the split costs a round trip of every row through a Python worker).
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["with_holdout"]

_GOLDEN = 0x9E3779B97F4A7C15  # the constants of app.offline.calibration.collect.splitmix64
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_LIMB = 16
_MASK = (1 << _LIMB) - 1


def _zero() -> Column:
    from pyspark.sql import functions as F

    return F.lit(0).cast("long")


def _join(parts: list[Column]) -> Column:
    """Four column sums (each < 2**35) -> the long whose limbs they are, carries propagated, mod 2**64."""
    from pyspark.sql import functions as F

    limbs, carry = [], _zero()
    for i, part in enumerate(parts):
        total = part + carry
        limbs.append(F.shiftleft(total.bitwiseAND(F.lit(_MASK)), _LIMB * i))
        carry = F.shiftright(total, _LIMB)
    return reduce(lambda a, b: a.bitwiseOR(b), limbs)


def _split(frame: DataFrame, value: Column, prefix: str) -> tuple[DataFrame, list[Column]]:
    """`frame` plus the four 16-bit limbs of `value` (a long read as uint64) as columns, least significant first."""
    from pyspark.sql import functions as F

    names = [f"{prefix}{i}" for i in range(4)]
    out = frame.withColumns({n: F.shiftrightunsigned(value, _LIMB * i).bitwiseAND(F.lit(_MASK))
                             for i, n in enumerate(names)})
    return out, [F.col(n) for n in names]


def _times(xs: list[Column], constant: int) -> Column:
    """x * constant mod 2**64, x given by its limbs."""
    cs = [(constant >> (_LIMB * j)) & _MASK for j in range(4)]
    return _join([sum((xs[i] * cs[k - i] for i in range(k + 1) if cs[k - i]), start=_zero()) for k in range(4)])


def _plus(xs: list[Column], constant: int) -> Column:
    """x + constant mod 2**64, x given by its limbs."""
    return _join([xs[i] + ((constant >> (_LIMB * i)) & _MASK) for i in range(4)])


def with_holdout(frame: DataFrame, key: str, fraction: float, name: str) -> DataFrame:
    """`frame` plus a boolean column `name`: the row's `key` (an integer column) is held out."""
    from pyspark.sql import functions as F

    # Limbs and products in separate projections: each reads its input several times, and Catalyst
    # keeps such projections apart instead of repeating the input expression (a filter on `name`
    # would still inline them all into one huge condition: filter after a nondeterministic column).
    out, xs = _split(frame, F.col(key).cast("long"), f"{name}_a")
    out = out.withColumn(f"{name}_s", _plus(xs, _GOLDEN))
    for step, (shift, constant) in enumerate(((30, _MIX_1), (27, _MIX_2))):
        x = F.col(f"{name}_s")
        out, xs = _split(out, x.bitwiseXOR(F.shiftrightunsigned(x, shift)), f"{name}_{step}")
        out = out.withColumn(f"{name}_s", _times(xs, constant))
    x = F.col(f"{name}_s")
    hashed = x.bitwiseXOR(F.shiftrightunsigned(x, 31))
    # As numpy: the top 53 bits as a double in [0, 1) (exact: a double holds 53 bits), then compared.
    unit = F.shiftrightunsigned(hashed, 11).cast("double") * F.lit(2.0**-53)
    helpers = [f"{name}_s", *(f"{name}_{p}{i}" for p in ("a", "0", "1") for i in range(4))]
    return out.withColumn(name, unit < F.lit(float(fraction))).drop(*helpers)
