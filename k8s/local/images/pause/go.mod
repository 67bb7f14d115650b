module scaledkite.local/pause

go 1.24
