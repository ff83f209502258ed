"""The instruction that asks for RL-CoMM's three-part answer format.

Every dataset converter and the tiny datasets append this to the question, so the policy is
always asked for the format the rewards parse (``verl_avconfuse.rewards.parse_response``).
"""

OUTPUT_FORMAT_INSTRUCTION = (
    "First think about what you hear inside <a-think> </a-think>, then about what you see inside "
    "<v-think> </v-think>, then give the final answer inside <answer> </answer>."
)


def format_question(question: str, media_placeholders: str = "") -> str:
    """The user turn: media placeholders (``<video>``, ``<audio>``), the question, the instruction."""
    question = question.strip()
    prefix = f"{media_placeholders}\n" if media_placeholders else ""
    return f"{prefix}{question} {OUTPUT_FORMAT_INSTRUCTION}"
