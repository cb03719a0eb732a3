"""Detection rules: one module per rule, pure and vectorised. See each module's docstring."""

from surveil.rules.daily_orders_20k import DailyOrders20k
from surveil.rules.order_rate_1s import OrderRate1s
from surveil.rules.sell_burst_1m import SellBurst1m

#: every rule, in evaluation order
RULES = (OrderRate1s, DailyOrders20k, SellBurst1m)

__all__ = ["RULES", "OrderRate1s", "DailyOrders20k", "SellBurst1m"]
