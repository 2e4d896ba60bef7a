"""Locustfile: the intake users (:mod:`loadtests.intake`) under the doubles shape (:class:`loadtests.shapes.DoublesShape`).

``locust -f loadtests/intake_doubles.py --host URL --headless``; parameters from ``DRILL_SHAPE_*``
(see :mod:`loadtests.shapes`). ``DRILL_SHAPE`` is ignored here: this file names its shape.
"""

from loadtests.intake import EposWebhooks, RestRetailer, ShopifyWebhooks
from loadtests.shapes import DoublesShape

__all__ = ["DoublesShape", "EposWebhooks", "RestRetailer", "ShopifyWebhooks"]
