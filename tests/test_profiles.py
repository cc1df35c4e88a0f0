"""Which decoding settings the sampled-profile row uses."""

from lpt_core.config import GenerationConfig
from lpt_core.generation.store import profile_key
from lpt_core.profiles import sampling_configs


def test_each_sample_is_sampled_with_its_own_seed_and_identity():
    greedy = GenerationConfig(max_new_tokens=16, seed=7)
    configs = sampling_configs(greedy, samples=3, temperature=0.7)
    assert [c.seed for c in configs] == [8, 9, 10]  # never the greedy run's own seed
    assert all(c.do_sample and c.temperature == 0.7 and c.max_new_tokens == 16 for c in configs)
    keys = {profile_key("prompt", "model", c.model_dump_json()) for c in configs}
    assert len(keys) == 3  # stored and reused separately
    assert not greedy.do_sample  # the recipe's own settings are left alone
