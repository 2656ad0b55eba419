module github.com/vmdriver/vmdriver

go 1.26
