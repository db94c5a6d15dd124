//go:build linux && cgo

package memif

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCloseIsDeleteAndFree(t *testing.T) {
	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	c, err := Create(&ConnArgs{Socket: s})
	require.NoError(t, err)
	assert.ErrorIs(t, s.Close(), ErrInvalArg, "a socket with a connection is refused, as by Delete")
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Close(), ErrDeleted, "Close twice, as Delete twice")
	require.NoError(t, s.Close())
	assert.ErrorIs(t, s.Close(), ErrDeleted)

	b, err := NewBuffers(4)
	require.NoError(t, err)
	require.NoError(t, b.Close())
	assert.ErrorIs(t, b.checkCount("test", 0), ErrInvalArg, "the batch is freed")
	require.NoError(t, b.Close(), "a second Close is harmless")
}
