"""Multi-assets that can be materialised one output at a time (`can_subset=True`, outputs not
required).

Each multi-asset here computes its outputs together (one read of the raw files gives both the
interactions and the items; one training run gives both the generator and the recommender), so a
run that selects one of them still computes both, but stores and reports only the selected ones:
the other keeps its last materialisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg


def selected_outputs(context: dg.AssetExecutionContext, *outputs: dg.Output) -> Iterator[dg.Output]:
    """The `outputs` this run selected, in the order given."""
    wanted = context.selected_output_names
    for output in outputs:
        if output.output_name in wanted:
            yield output
