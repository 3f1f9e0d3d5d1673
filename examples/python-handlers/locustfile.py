"""Your own Python handlers under load: 300 orders/s at QoS 1 through the team's own mediator
(orders.py). Run from this folder: locust -f locustfile.py --headless -u 5 -r 5 -t 20s"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the team's code beside this file

from orders import charge_card, production_mediator, reserve_stock

from catga_bench import CatgaUser, Scenario, SLOTargets, Stream


class Orders(CatgaUser):
    scenario = Scenario(
        name="python_handlers",
        description="your own async handlers and mediator, 300 orders/s, QoS 1",
        rate=300,
        qos=1,
        streams=[Stream("OrderPlaced", handlers=[reserve_stock, charge_card])],
        mediator=production_mediator,
        slo=SLOTargets(p99_ms=100, max_error_ratio=0.02),
    )
