"""The profile quality report: are the profiles readable, faithful to the history, informative to
a reader and steerable? Beside the evaluation report, for the zero-shot and every trained variant."""



import dagster as dg
import polars as pl

from lpt_core.evaluation import assess_quality
from lpt_core.profile_quality.report import registry_tags
from lpt_core.profiles import assessed_examples
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.recording.reports import record_quality_report
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.values import ItemIndexInfo, QualityReport, TrainedIndexes

GROUP = "evaluation"


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def profile_quality_report(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    item_catalog: pl.DataFrame,
    zero_shot_profiles: pl.DataFrame,
    item_index: ItemIndexInfo,
    trained_profiles: pl.DataFrame,
    trained_item_index: TrainedIndexes,
) -> QualityReport:
    """Simulated-reader accuracy, genre faithfulness, steerability and readability of every
    variant's profiles, with user-level intervals; the value holds each variant's key numbers as registry tags."""
    cfg = recipe.get()
    examples = assessed_examples(user_examples, cfg.evaluation.split, cfg.quality.max_users)
    report = assess_quality(
        cfg, examples, item_catalog, zero_shot_profiles, trained_profiles, item_index.folder, trained_item_index.variants
    )
    files = report.save(workspace.outputs.folder("profile_quality_report"))
    record_quality_report(context, mlflow, cfg, report, files, examples, item_catalog, zero_shot_profiles, trained_profiles)
    return QualityReport(folder=files["json"].parent, registry_tags=registry_tags(report.numbers))
