"""langptune's method as a plain library: data, prompts, models, generation, retrieval, metrics,
baselines, training, profile quality and serving. It never imports dagster: lpt_dagster wraps it."""
