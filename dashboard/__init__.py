"""The ops dashboard: consumer lag, events/s, rewards per adapter version, live adapters, dead letters."""

from dashboard.collector import Collector
from dashboard.lag import LagReader, LagRow
from dashboard.server import DashboardServer
from dashboard.settings import DashboardSettings

__all__ = ["Collector", "DashboardServer", "DashboardSettings", "LagReader", "LagRow"]
