"""The evaluation report: every method on the same split, the same catalogue, the same ranking."""



import dagster as dg
import polars as pl

from lpt_core import text
from lpt_core.baselines import EvalContext, evaluate_methods
from lpt_core.data.splitting import train_item_counts
from lpt_core.evaluation import (
    head_training,
    trained_profiles_under_profile_head,
    trained_variant_ranks,
    under_profile_head_name,
)
from lpt_core.models import load_encoder
from lpt_core.profiles import profiles_for, sampled_profiles_for
from lpt_core.recommenders import load_baseline_models
from lpt_core.report import build_report
from lpt_core.retrieval import ItemIndex, TextEncoder
from lpt_core.training.variants import get_variant
from lpt_dagster.assets.profiles import GPU_POOL
from lpt_dagster.lineage import catalog_table, example_splits, log_tables, profile_tables, read_tables
from lpt_dagster.metadata import png_markdown
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
    ev = cfg.evaluation
    examples = user_examples.filter(pl.col("split") == ev.split)
    index = ItemIndex.load(item_index.folder)
    ctx = EvalContext(
        examples=examples,
        index=index,
        encoder=TextEncoder(load_encoder(cfg.models.encoder, cfg.models)),
        item_text=dict(zip(item_catalog["item_id"].to_list(), item_catalog["text"].to_list())),
        train_item_counts=train_item_counts(cleaned_histories, user_examples),
        seed=ev.seed,
        history_texts=text.history_texts(examples, item_catalog),
        profiles=profiles_for(examples, zero_shot_profiles),
        sampled_profiles=sampled_profiles_for(examples, sampled_profiles),
        models=load_baseline_models(baseline_models.folder, index.item_ids.tolist()),
        head_training=head_training(ev, user_examples, item_catalog, zero_shot_profiles),
    )
    ranks = evaluate_methods(ctx, ev.methods)
    for name, trained in trained_item_index.variants.items():
        ranks[name] = trained_variant_ranks(ctx, cfg.models, name, trained.folder, trained.encoder_dir, trained_profiles)
        if "profile_head" in ev.methods and get_variant(name).trains_generator:
            ranks[under_profile_head_name(name)] = trained_profiles_under_profile_head(ctx, name, trained_profiles)
    report = build_report(
        ranks, examples["user_id"].to_list(), ks=ev.ks, samples=ev.bootstrap_samples,
        confidence=ev.confidence, seed=ev.seed, baseline=ev.baseline,
        title=f"{cfg.name}: {ev.split} split, {examples.height} examples, {len(ctx.index.item_ids)} items",
    )
    files = report.save(workspace.outputs.folder("evaluation_report"))
    context.log.info("evaluation report:\n%s", report.table_markdown)
    profiles = {"zero_shot_profiles": zero_shot_profiles, "sampled_profiles": sampled_profiles,
                "trained_profiles": trained_profiles}
    with mlflow.asset_run(context, cfg, "evaluation_report") as run:
        log_tables(run, [
            *example_splits(user_examples, [ev.split]),
            *read_tables(cleaned_histories=cleaned_histories),
            catalog_table(item_catalog),
            *profile_tables(profiles),
        ])
        run.log_metrics(report.flat_metrics())
        for path in files.values():
            run.log_artifact(path, "evaluation_report")
    context.add_output_metadata(
        {
            "table": dg.MetadataValue.md(report.table_markdown),
            "plot": png_markdown(files["plot"]),
            "examples": examples.height,
            "users": examples["user_id"].n_unique(),
            "report_folder": dg.MetadataValue.path(str(files["json"].parent)),
            "mlflow_run": mlflow.link(run),
        }
    )
    return EvaluationReport(folder=files["json"].parent, methods=report.methods)
