from bacgcn.cli import main

raise SystemExit(main())
