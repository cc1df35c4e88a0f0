"""The evaluation report: every method on the same split, the same catalogue, the same ranking."""



import dagster as dg
import polars as pl

from lpt_core.evaluation import EvaluationTables, evaluate
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.recording.reports import record_evaluation_report
from lpt_dagster.resources import MlflowResource, RecipeResource, WorkspaceResource
from lpt_dagster.values import BaselineModels, EvaluationReport, ItemIndexInfo, TrainedIndexes

GROUP = "evaluation"


@dg.asset(group_name=GROUP, pool=GPU_POOL)
def evaluation_report(
    context: dg.AssetExecutionContext,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    workspace: WorkspaceResource,
    user_examples: pl.DataFrame,
    cleaned_histories: pl.DataFrame,
    item_catalog: pl.DataFrame,
    zero_shot_profiles: pl.DataFrame,
    sampled_profiles: pl.DataFrame,
    item_index: ItemIndexInfo,
    baseline_models: BaselineModels,
    trained_profiles: pl.DataFrame,
    trained_item_index: TrainedIndexes,
) -> EvaluationReport:
    """Recall/NDCG/MRR@K of every method with paired bootstrap intervals, as markdown, plot and JSON."""
    cfg = recipe.get()
    tables = EvaluationTables(
        user_examples, cleaned_histories, item_catalog, zero_shot_profiles, sampled_profiles, trained_profiles
    )
    report = evaluate(cfg, tables, item_index.folder, baseline_models.folder, trained_item_index.variants)
    files = report.save(workspace.outputs.folder("evaluation_report"))
    record_evaluation_report(context, mlflow, cfg, report, files, tables)
    return EvaluationReport(folder=files["json"].parent, methods=report.methods)
