"""Deterministic upstream simulators: the 住基 (resident registry) and the medical institutions' results.

* :func:`generate_city` — a city population and one fiscal year of 住基異動 (:mod:`connectors.simulators.city`);
* :func:`generate_results` — screening results for that city, with a known share of dirty ones
  (:mod:`connectors.simulators.institution`);
* :func:`publish` — send events to Kafka with a progress bar (:mod:`connectors.simulators.publish`).
"""

from connectors.simulators.city import City, PersonRecord, generate_city
from connectors.simulators.institution import ResultPlan, ResultTruth, generate_results
from connectors.simulators.publish import publish

__all__ = ["City", "PersonRecord", "ResultPlan", "ResultTruth", "generate_city", "generate_results", "publish"]
