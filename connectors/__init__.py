"""Connectors: the 中間サーバーコネクタ, the 中間サーバー, the national-network simulator and upstream simulators."""
