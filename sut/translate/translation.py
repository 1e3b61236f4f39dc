"""Both stages chained: Resources -> (IR, XdsResources, Statuses)."""

from __future__ import annotations

import attrs

from sut.gatewayapi import Resources, Statuses
from sut.translate.build import build_ir
from sut.translate.ir import IR
from sut.translate.options import TranslateOptions
from sut.translate.xds import XdsResources, to_xds

__all__ = ["Translation", "translate"]


@attrs.frozen
class Translation:
    ir: IR
    xds: XdsResources
    statuses: Statuses


def translate(resources: Resources, options: TranslateOptions | None = None) -> Translation:
    """Pure: equal resources and options give equal IR, statuses and byte-equal protos."""
    options = options or TranslateOptions()
    ir, statuses = build_ir(resources, options)
    return Translation(ir=ir, xds=to_xds(ir, options), statuses=statuses)
