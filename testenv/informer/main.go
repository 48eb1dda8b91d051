// Command informer runs a client-go SharedInformer for ConfigMaps in one namespace against an
// unauthenticated API server (vai over plain HTTP) and prints one JSON line per event on stdout:
//
//	{"event":"SYNCED"}                                   once the informer's cache has synced
//	{"event":"ADDED"|"UPDATED"|"DELETED","namespace":"ns","name":"n","resourceVersion":"7","data":{"k":"v"}}
//
// It runs until it is killed. Integration tests use it to check that a real client-go informer
// syncs from vai and then sees creates, updates and deletes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

type event struct {
	Event           string            `json:"event"`
	Namespace       string            `json:"namespace"`
	Name            string            `json:"name"`
	ResourceVersion string            `json:"resourceVersion"`
	Data            map[string]string `json:"data"`
}

var (
	mu  sync.Mutex
	out = json.NewEncoder(os.Stdout) // os.Stdout is unbuffered: each line is written at once
)

func emit(e any) {
	mu.Lock()
	defer mu.Unlock()
	if err := out.Encode(e); err != nil {
		fmt.Fprintln(os.Stderr, "informer: writing stdout:", err)
		os.Exit(1)
	}
}

func emitObject(kind string, obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		fmt.Fprintf(os.Stderr, "informer: unexpected object %T\n", obj)
		return
	}
	data := cm.Data
	if data == nil {
		data = map[string]string{}
	}
	emit(event{kind, cm.Namespace, cm.Name, cm.ResourceVersion, data})
}

func main() {
	server := flag.String("server", "", "plain http URL of the API server, e.g. http://127.0.0.1:18001 (no auth)")
	namespace := flag.String("namespace", "", "namespace to watch (empty: all namespaces)")
	resource := flag.String("resource", "configmaps", "resource to watch; only configmaps is supported")
	flag.Parse()
	if *server == "" || *resource != "configmaps" {
		fmt.Fprintln(os.Stderr, "usage: informer --server URL [--namespace NS] [--resource configmaps]")
		os.Exit(2)
	}

	client, err := kubernetes.NewForConfig(&rest.Config{Host: *server})
	if err != nil {
		fmt.Fprintln(os.Stderr, "informer:", err)
		os.Exit(1)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(*namespace))
	informer := factory.Core().V1().ConfigMaps().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { emitObject("ADDED", obj) },
		UpdateFunc: func(_, obj any) { emitObject("UPDATED", obj) },
		DeleteFunc: func(obj any) { emitObject("DELETED", obj) },
	}); err != nil {
		fmt.Fprintln(os.Stderr, "informer:", err)
		os.Exit(1)
	}

	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		close(stop)
	}()

	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, informer.HasSynced) {
		os.Exit(1)
	}
	emit(map[string]string{"event": "SYNCED"})
	<-stop
	factory.Shutdown()
}
