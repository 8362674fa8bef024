from services.fetcher.app import main

main()
