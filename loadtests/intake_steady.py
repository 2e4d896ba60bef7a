"""Locustfile: the intake users (:mod:`loadtests.intake`) under the steady shape (:class:`loadtests.shapes.SteadyShape`).

``locust -f loadtests/intake_steady.py --host URL --headless``; parameters from ``DRILL_SHAPE_*``
(see :mod:`loadtests.shapes`). ``DRILL_SHAPE`` is ignored here: this file names its shape.
"""

from loadtests.intake import EposWebhooks, RestRetailer, ShopifyWebhooks
from loadtests.shapes import SteadyShape

__all__ = ["EposWebhooks", "RestRetailer", "ShopifyWebhooks", "SteadyShape"]
