"""Training of the two halves of the method: RL on the profile writer, contrastive on the recommender."""
