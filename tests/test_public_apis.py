"""promptclf reaches into no dependency's private members: they change without notice on upgrades."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "promptclf"
# LangChain's private members promptclf once used (batch_api.py built request bodies with them), and the
# patterns of any other: a private name imported from langchain, or a RunnableSequence's private steps.
PRIVATE = re.compile(
    r"\.(_get_request_payload|_default_params|_client_params|_generate|_agenerate|"
    r"_create_chat_result|_convert_\w+|steps__)\b|from langchain\w*(\.\w+)* import _\w+"
)


def test_no_private_langchain_member_is_used():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []
