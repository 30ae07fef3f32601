// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title KeyregMembershipToken: the voting membership of one keyreg DAO.
/// @notice A fixed, non-transferable ERC20Votes balance per member, minted once at deploy and
/// delegated to the member itself, so members can vote (or sign ballots for castVoteBySig) without
/// ever sending a transaction. Votes are checkpointed by block number (the default ERC-6372 clock),
/// which is what KeyregGovernor's voting delay and period are counted in.
/// Invariant: totalSupply and every balance are fixed after construction (no mint, burn or transfer),
/// and every member's votes stay delegated to the member (delegating to anyone else reverts), so
/// a proposal's quorum and every member's weight are known in advance, and only members vote: a
/// membership can be neither sold nor lent.
contract KeyregMembershipToken is ERC20, ERC20Votes {
    error NoMembers();
    error LengthMismatch(uint256 members, uint256 weights);
    error ZeroWeight(address member);
    error DuplicateMember(address member);
    error MembershipNotTransferable();
    error MembershipNotDelegable(address delegatee);

    constructor(string memory name_, string memory symbol_, address[] memory members, uint256[] memory weights)
        ERC20(name_, symbol_)
        EIP712(name_, "1")
    {
        if (members.length == 0) revert NoMembers();
        if (members.length != weights.length) revert LengthMismatch(members.length, weights.length);
        for (uint256 i = 0; i < members.length; ++i) {
            address m = members[i];
            if (weights[i] == 0) revert ZeroWeight(m);
            if (balanceOf(m) != 0) revert DuplicateMember(m);
            _mint(m, weights[i]);
            _delegate(m, m);
        }
    }

    /// Memberships are whole units.
    function decimals() public pure override returns (uint8) {
        return 0;
    }

    /// Votes stay with their member: `delegate`/`delegateBySig` to anyone else revert (lending a
    /// vote to a non-member would let someone with no membership vote).
    function _delegate(address account, address delegatee) internal override {
        if (delegatee != account) revert MembershipNotDelegable(delegatee);
        super._delegate(account, delegatee);
    }

    /// Only minting (in the constructor) moves balances: memberships cannot be sold or lent.
    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        if (from != address(0)) revert MembershipNotTransferable();
        super._update(from, to, value);
    }
}
