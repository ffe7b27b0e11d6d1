"""The report's data layer under the one name report/index.qmd imports (`import analysis.report as rep`).

The code lives in analysis/reporting/ by concern: `results` (finding and reading results/),
`format` (numbers and text), `tables`, `facts` (every number the prose cites) and `markdown`.
This module only gathers their public names, so the notebook keeps one import.
"""

from analysis.reporting.endpoints import *  # noqa: F403
from analysis.reporting.facts import *  # noqa: F403
from analysis.reporting.format import *  # noqa: F403
from analysis.reporting.markdown import *  # noqa: F403
from analysis.reporting.results import *  # noqa: F403
from analysis.reporting.tables import *  # noqa: F403
from analysis.reporting.bench_tables import (  # noqa: F401
    criteria_frame, generation_frame, load_sweep, load_validation, sweep_facts, sweep_figure, sweep_frame, validation_facts, validation_figure,
    verdict_frame,
)
