package priority

import (
	"testing"
	"testing/synctest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBackgroundWaitsForForeground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Gate
		done := g.Foreground()
		ran := make(chan struct{})
		go g.Background(func() { close(ran) })
		synctest.Wait()
		select {
		case <-ran:
			t.Fatal("background work ran while foreground work was under way")
		default:
		}
		done()
		done() // a second call changes nothing
		synctest.Wait()
		select {
		case <-ran:
		default:
			t.Fatal("background work did not run once foreground work ended")
		}
	})
}

func TestForegroundWaitsForRunningBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Gate
		release := make(chan struct{})
		for range 2 { // background sections run together
			go g.Background(func() { <-release })
		}
		synctest.Wait()
		if g.bg != 2 {
			t.Fatalf("%d background sections running, want 2", g.bg)
		}
		started := make(chan func())
		go func() { started <- g.Foreground() }()
		synctest.Wait()
		ran := make(chan struct{})
		go g.Background(func() { close(ran) }) // behind the waiting foreground
		synctest.Wait()
		select {
		case <-started:
			t.Fatal("foreground work started while background work ran")
		case <-ran:
			t.Fatal("background work started ahead of waiting foreground work")
		default:
		}
		close(release)
		done := <-started
		synctest.Wait()
		select {
		case <-ran:
			t.Fatal("background work started while foreground work was under way")
		default:
		}
		done()
		<-ran
	})
}

func TestForegroundsTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Gate
		a := g.Foreground()
		b := g.Foreground() // does not wait for a
		ran := make(chan struct{})
		go g.Background(func() { close(ran) })
		a()
		synctest.Wait()
		select {
		case <-ran:
			t.Fatal("background work ran while one foreground section was under way")
		default:
		}
		b()
		<-ran
	})
}

// Foreground work back to back lets the background work it held back
// start in between.
func TestBackgroundNotStarved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Gate
		first := g.Foreground()
		ran, release := make(chan struct{}), make(chan struct{})
		go g.Background(func() { close(ran); <-release })
		synctest.Wait()
		next := make(chan func())
		go func() {
			first()
			next <- g.Foreground() // at once: no scheduling point in between
		}()
		synctest.Wait()
		select {
		case <-ran:
		default:
			t.Fatal("the next foreground section went before the background work the last one held back")
		}
		select {
		case <-next:
			t.Fatal("foreground work started while background work ran")
		default:
		}
		close(release)
		(<-next)()
	})
}
