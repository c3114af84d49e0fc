"""Split specs (`test`, `test[:32]`, `test[33:133]`, `test[-10:]`, `test[:10%]`, `a+b`).

The hub loaders read these with `datasets`' own machinery; we do the same on the local rows
(`ReadInstruction.from_spec(...).to_absolute(...)`) so a config means exactly what it would mean
with `load_dataset(hub_id, split=...)`, rounding of percentages and clamping included.
"""

from __future__ import annotations

from collections.abc import Mapping

from collabcoder.training.data.tasks import DatasetError


class SplitError(DatasetError):
    """A split spec that names no split of the dataset or does not parse."""


def split_indices(
    split: str, split_sizes: Mapping[str, int], dataset: str
) -> list[tuple[str, int]]:
    """(split name, row index) of every row `split` selects, in `datasets`' order."""
    try:
        from datasets import ReadInstruction
    except ImportError as exc:  # `datasets` comes with the `train` extra
        raise SplitError(
            f"split {split!r} needs the `datasets` package: pip install 'collabcoder[train]'"
        ) from exc

    valid = ", ".join(repr(name) for name in split_sizes)
    hint = (
        f"valid splits of {dataset!r}: {valid}; slices as in `datasets`, e.g. "
        "'test[:32]', 'test[33:133]', 'test[-16:]', 'test[:10%]'"
    )
    try:
        instructions = ReadInstruction.from_spec(str(split)).to_absolute(dict(split_sizes))
    except (ValueError, AssertionError) as exc:
        raise SplitError(f"bad split {split!r} for dataset {dataset!r} ({exc}); {hint}") from exc
    # `datasets` refuses a spec whose every part is empty (`test[0:0]`, `test[200:]` on 164 rows)
    # but returns zero rows for a reversed slice (`test[5:3]`); keep both quirks.
    if all(ins.to == ins.from_ for ins in instructions):
        raise SplitError(f"split {split!r} selects no rows of dataset {dataset!r}; {hint}")
    return [(ins.splitname, i) for ins in instructions for i in range(ins.from_, ins.to)]
