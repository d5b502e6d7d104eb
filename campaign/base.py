"""Base model for every scenario section (unknown keys are errors, values are immutable) and the
id type SKUs, phases, segments and coupons share."""

from __future__ import annotations

import re

from pydantic import AfterValidator, BaseModel, ConfigDict

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Section(BaseModel):
    """A scenario section. Typos must not be silently ignored, so extra keys are rejected."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


def identifier(display_key: str | None = None) -> AfterValidator:
    """An id: ASCII letters, digits, `_ . -`, 1 to 64 characters (ids travel in URLs, CSV
    files and dotted scenario keys). The error names `display_key`, where a Chinese display
    name belongs."""

    def check(value: str) -> str:
        if _ID.match(value):
            return value
        where = (f"; keep an ASCII id here and put the display name, which may be Chinese, "
                 f'in {display_key} = "{value}"' if display_key else "")
        raise ValueError(f'"{value}" is not an id: ids are ASCII (letters, digits, _ . -, 1 to '
                         f"64 characters){where}")

    return AfterValidator(check)
