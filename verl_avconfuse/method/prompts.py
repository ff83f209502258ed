"""The instruction that asks for RL-CoMM's three-part answer format.

Every dataset converter and the tiny datasets append this to the question, so the policy is
always asked for the format the rewards parse (``verl_avconfuse.method.parsing.parse_response``).
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


# ------------------------------------------------------------------------------------- Step-RR

#: The reference audio LM hears only the audio and is told the question and the right answer
#: (RL-CoMM's heterogeneous reference; the release builds the same three pieces into its prompt).
REFERENCE_PROMPT = (
    "Listen to the audio. {question} The answer is {answer}. Reason about what you hear that helps answer "
    "the question, inside <a-think> </a-think>."
)
#: Bump when REFERENCE_PROMPT changes: it is part of every cached reference's key.
REFERENCE_PROMPT_VERSION = "v1"

#: Embedding instructions on the query side, as Qwen3-Embedding expects: ``Instruct: {task}\nQuery:``.
ARR_INSTRUCTION = "Given a reference answer, retrieve semantically similar content"
AVC_INSTRUCTION = "Given an audio description, retrieve semantically coherent visual content"


def embedding_query_prompt(instruction: str) -> str:
    return f"Instruct: {instruction}\nQuery:"
