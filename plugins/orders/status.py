"""The order status machine of DESIGN.md, with no I/O.

pending_payment -> paid -> in_production -> shipped -> delivered, and
cancelled from pending_payment or paid: once printing starts, the paper and
the press time are spent.
"""

from __future__ import annotations

from typing import Literal

OrderStatus = Literal[
    "pending_payment", "paid", "in_production", "shipped", "delivered", "cancelled"
]

FIRST_STATUS = "pending_payment"
NEXT_STATUS = {
    "pending_payment": "paid",
    "paid": "in_production",
    "in_production": "shipped",
    "shipped": "delivered",
}
CANCELLABLE = frozenset({"pending_payment", "paid"})

# Why a cancellation is refused, in the customer's words, by current status.
TOO_LATE_TO_CANCEL = {
    "in_production": "The order is already being printed and can no longer be "
    "cancelled.",
    "shipped": "The order has already shipped and can no longer be cancelled.",
    "delivered": "The order has been delivered and can no longer be cancelled.",
    "cancelled": "The order is already cancelled.",
}


def allowed_moves(status: str) -> list[str]:
    """Where an order in `status` may go next, in the machine's order."""
    moves = [NEXT_STATUS[status]] if status in NEXT_STATUS else []
    if status in CANCELLABLE:
        moves.append("cancelled")
    return moves


def can_move(status: str, target: str) -> bool:
    return target in allowed_moves(status)
