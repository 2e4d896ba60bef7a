"""Locustfile: the intake users (:mod:`loadtests.intake`) under the spike shape (:class:`loadtests.shapes.SpikeShape`).

``locust -f loadtests/intake_spike.py --host URL --headless``; parameters from ``DRILL_SHAPE_*``
(see :mod:`loadtests.shapes`). ``DRILL_SHAPE`` is ignored here: this file names its shape.
"""

from loadtests.intake import EposWebhooks, RestRetailer, ShopifyWebhooks
from loadtests.shapes import SpikeShape

__all__ = ["EposWebhooks", "RestRetailer", "ShopifyWebhooks", "SpikeShape"]
