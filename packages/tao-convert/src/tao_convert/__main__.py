from tao_convert.cli import main

raise SystemExit(main())
