from relayrouter.plugin import Plugin

decrypt_search = Plugin("decrypt-search", "connectors.decrypt_search.tap",
                        "On-premises decryption, search and replication of end-to-end encrypted topics.",
                        extra="decrypt-search")
