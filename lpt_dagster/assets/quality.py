"""The profile quality report: are the profiles readable, faithful to the history, informative to
a reader and steerable? Beside the evaluation report, for the zero-shot and every trained variant."""



import dagster as dg
import polars as pl

from lpt_core.evaluation import quality_variant, variant_profiles
from lpt_core.models import load_generator
from lpt_core.profile_quality.report import QualitySettings, assess_profiles, plot_quality, registry_tags
from lpt_core.profile_quality.simulated_reader import LikelihoodJudge
from lpt_core.profiles import assessed_examples
from lpt_core.sources import data_source
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.lineage import EXAMPLES_ASSET, TrackedTable, catalog_table, log_tables, profile_tables
from lpt_dagster.metadata import figure_markdown
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
    quality, ev = cfg.quality, cfg.evaluation
    examples = assessed_examples(user_examples, ev.split, quality.max_users)
    variants = [quality_variant("zero_shot", examples, zero_shot_profiles, item_index.folder, cfg.models.encoder,
                                cfg.models)]
    for name, trained in trained_item_index.variants.items():
        variants.append(quality_variant(
            name, examples, variant_profiles(trained_profiles, name), trained.folder, trained.encoder_dir, cfg.models
        ))
    model, tokenizer = load_generator(quality.judge, cfg.models)
    judge = LikelihoodJudge(model, tokenizer, data_source(cfg.data.source).reader_question, batch_size=quality.judge_batch_size)
    settings = QualitySettings(
        candidates=quality.candidates, edits_per_user=quality.edits_per_user, seed=quality.seed,
        bootstrap_samples=ev.bootstrap_samples, confidence=ev.confidence, source=cfg.data.source,
    )
    title = f"{cfg.name}: profile quality, {ev.split} split, judge {quality.judge}"
    report = assess_profiles(variants, examples, item_catalog, judge, settings, title=title)
    files = report.save(workspace.outputs.folder("profile_quality_report"))
    context.log.info("profile quality report:\n%s", report.markdown())
    assessed = TrackedTable("assessed_examples", examples, EXAMPLES_ASSET, ev.split)
    profiles = profile_tables({"zero_shot_profiles": zero_shot_profiles, "trained_profiles": trained_profiles})
    with mlflow.asset_run(context, cfg, "profile_quality_report") as run:
        log_tables(run, [assessed, catalog_table(item_catalog), *profiles])
        run.log_metrics(report.flat_metrics())
        for path in files.values():
            run.log_artifact(path, "profile_quality_report")
    context.add_output_metadata({
        "table": dg.MetadataValue.md(report.markdown()),
        "plot": figure_markdown(plot_quality(report.numbers)),
        "genre_samples": dg.MetadataValue.md(files["samples"].read_text(encoding="utf-8")),
        "examples": examples.height,
        "report_folder": dg.MetadataValue.path(str(files["json"].parent)),
        "mlflow_run": mlflow.link(run),
    })
    return QualityReport(folder=files["json"].parent, registry_tags=registry_tags(report.numbers))
