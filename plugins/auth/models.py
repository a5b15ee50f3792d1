"""Request and response bodies of the auth routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

MIN_PASSWORD_LENGTH = 10

Password = Annotated[str, StringConstraints(max_length=1024)]
NewPassword = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]


class RegisterBody(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=False)

    email: EmailStr = Field(max_length=254)
    password: NewPassword = Field(
        description=f"at least {MIN_PASSWORD_LENGTH} characters"
    )
    name: Name


class LoginBody(BaseModel):
    email: Annotated[str, StringConstraints(max_length=254)]
    password: Password


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Literal["customer", "staff"]


class LoggedOut(BaseModel):
    status: Literal["signed_out"]
