"""thresher's data contract: canonical Pydantic records, nothing else."""

from thresher.schemas.placeholders import PLACEHOLDER_RE, find_placeholder
from thresher.schemas.records import (
    KINDS,
    QA,
    Dialogue,
    Document,
    Identity,
    Message,
    Preference,
    Record,
    Scored,
    ScoredResponse,
    ToolCall,
    TurnOrderError,
    check_turn_order,
    json_type_name,
    normalize_space,
)

__all__ = [
    "KINDS", "PLACEHOLDER_RE", "QA", "Dialogue", "Document", "Identity", "Message", "TurnOrderError",
    "Preference", "Record", "Scored", "ScoredResponse", "ToolCall", "check_turn_order",
    "find_placeholder", "json_type_name", "normalize_space",
]
