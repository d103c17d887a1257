from twisted.application.service import ServiceMaker

decrypt_search = ServiceMaker("decrypt-search", "connectors.decrypt_search.tap",
                              "On-premises decryption, search and replication of end-to-end encrypted topics.",
                              "decrypt-search")
