from platelab.cli import main

raise SystemExit(main())
