"""Where Printz ships: ISO 3166-1 alpha-2 codes.

The shop prints in the euro area and ships within the EU, the rest of the EEA,
Switzerland and the United Kingdom. A code outside this list is refused when
the order is placed, not discovered by the courier; shipping further means
adding the code here (and a price for it, which the shop does not have yet).
"""

from __future__ import annotations

# fmt: off
EU = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR",
    "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI",
    "SK",
})
# fmt: on
SHIPPING_COUNTRIES = EU | {"CH", "GB", "IS", "LI", "NO"}


def country_problem(code: str) -> str | None:
    """Why an order cannot ship to `code` (already upper case), or None."""
    if code in SHIPPING_COUNTRIES:
        return None
    return "we do not ship to this country; we ship to " + ", ".join(
        sorted(SHIPPING_COUNTRIES)
    )
