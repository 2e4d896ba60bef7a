"""Locustfile: the intake users (:mod:`loadtests.intake`) under the step shape (:class:`loadtests.shapes.StepShape`).

``locust -f loadtests/intake_step.py --host URL --headless``; parameters from ``DRILL_SHAPE_*``
(see :mod:`loadtests.shapes`). ``DRILL_SHAPE`` is ignored here: this file names its shape.
"""

from loadtests.intake import EposWebhooks, RestRetailer, ShopifyWebhooks
from loadtests.shapes import StepShape

__all__ = ["EposWebhooks", "RestRetailer", "ShopifyWebhooks", "StepShape"]
