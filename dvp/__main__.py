from dvp.cli import main

raise SystemExit(main())
