"""One way to page a listing: `page` / `pageSize` in, `pagination` out, as seed 003 writes it:
`{page, pageSize, totalItems, totalPages, hasNext, hasPrevious}`.

The store pages (`MetadataStore.page`); this module only validates the query and describes
the page it got back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from pgfleet.core.wire import CamelModel

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

T = TypeVar("T")

# Route parameters: `page: PageNumber = 1, pageSize: PageSize = DEFAULT_PAGE_SIZE`.
PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
PageSize = Annotated[
    int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, 1 to {MAX_PAGE_SIZE}.")
]


class PageQuery(BaseModel):
    """Which page a caller asked for (already validated by the route's parameters)."""

    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


class Pagination(CamelModel):
    page: int = Field(ge=1)
    page_size: int = Field(ge=1)
    total_items: int = Field(ge=0)
    total_pages: int = Field(ge=1, description="At least 1: an empty listing is one empty page.")
    has_next: bool
    has_previous: bool

    @classmethod
    def of(cls, total_items: int, page: int, page_size: int) -> Pagination:
        total_pages = max(1, math.ceil(total_items / page_size))
        return cls(
            page=page,
            page_size=page_size,
            total_items=total_items,
            total_pages=total_pages,
            has_next=page < total_pages,
            has_previous=page > 1,
        )


class Page(Generic[T]):
    """One page of items and its `Pagination`. Listings put `items` under their own name
    (`alerts`, `backups`) next to `pagination`."""

    __slots__ = ("items", "pagination")

    def __init__(self, items: Sequence[T], total_items: int, page: int, page_size: int) -> None:
        self.items: list[T] = list(items)
        self.pagination = Pagination.of(total_items, page, page_size)

    @classmethod
    def of(cls, items: Sequence[T], total_items: int, query: PageQuery) -> Page[T]:
        return cls(items, total_items, query.page, query.page_size)
