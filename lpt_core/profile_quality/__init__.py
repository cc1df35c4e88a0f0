"""How readable, faithful and steerable generated profiles are: the profile_quality_report's parts.

One module per question, each usable on its own:
- copying: does a profile copy the prompt's history instead of summarising it?
- readability: length, repetition, share of text that is not about preferences.
- faithfulness: are the genres a profile names supported by the user's history?
- simulated_reader: can a judge LLM, reading only the profile, pick the user's next item?
- steerability: does editing a profile ("They love Horror movies.") move that genre's items?
- intervals: user-level bootstrap intervals for any per-row score.
- report: all of the above for every profile variant, as markdown, JSON and a plot.
"""

from lpt_core.profile_quality.copying import copies_history, copy_share

__all__ = ["copies_history", "copy_share"]
