from catga_bench.chaos.cli import main

raise SystemExit(main())
