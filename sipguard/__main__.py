from sipguard.cli import main

raise SystemExit(main())
