from lograven.cli import main

raise SystemExit(main())
