// testbox: a tiny static program for custom-container task images in tests,
// with just enough commands to follow the runner exit-code contract:
//
//	testbox echo WORDS...          print the words, exit 0
//	testbox exit CODE [MESSAGE]    write MESSAGE to /dev/termination-log and stderr, exit CODE
//	testbox sleep SECONDS          sleep; on SIGTERM report it and exit 143
//	testbox get URL                HTTP GET, print the body; exit 75 when unreachable
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func report(code int, message string) {
	if message != "" {
		fmt.Fprintln(os.Stderr, message)
		_ = os.WriteFile("/dev/termination-log", []byte(message), 0o644)
	}
	os.Exit(code)
}

func main() {
	if len(os.Args) < 2 {
		report(64, "usage: testbox echo|exit|sleep|get ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "echo":
		fmt.Println(strings.Join(args, " "))
	case "exit":
		if len(args) < 1 {
			report(64, "usage: testbox exit CODE [MESSAGE]")
		}
		code, err := strconv.Atoi(args[0])
		if err != nil {
			report(64, "exit code must be a number")
		}
		report(code, strings.Join(args[1:], " "))
	case "sleep":
		seconds := 3600.0
		if len(args) > 0 {
			seconds, _ = strconv.ParseFloat(args[0], 64)
		}
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		select {
		case <-stop:
			report(143, `{"outcome":"stopped","signal":"SIGTERM"}`)
		case <-time.After(time.Duration(seconds * float64(time.Second))):
		}
	case "get":
		if len(args) < 1 {
			report(64, "usage: testbox get URL")
		}
		client := http.Client{Timeout: 10 * time.Second}
		res, err := client.Get(args[0])
		if err != nil {
			report(75, err.Error())
		}
		body, _ := io.ReadAll(res.Body)
		fmt.Print(string(body))
		if res.StatusCode >= 400 {
			report(65, fmt.Sprintf("GET %s answered %d", args[0], res.StatusCode))
		}
	default:
		report(64, "unknown command "+os.Args[1])
	}
}
