// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title KeyregMembershipToken: the voting membership of one keyreg DAO.
/// @notice A non-transferable ERC20Votes balance per member, delegated to the member itself, so
/// members can vote (or sign ballots for castVoteBySig) without ever sending a transaction. Votes
/// are checkpointed by block number (the default ERC-6372 clock), which is what KeyregGovernor's
/// voting delay and period are counted in.
///
/// Membership changes only by the DAO's own vote: `addMember` and `removeMember` are callable only
/// by `executor`, the DAO's executor (its governor, or its timelock), fixed at deploy. The governor
/// checks at its own deployment that its token names it (or its timelock) as executor, and accepts
/// proposals for these two calls on its own token only.
///
/// Invariants: balances move only by `addMember` (mint) and `removeMember` (burn of the whole
/// balance), never by transfer; every member's votes stay delegated to the member (delegating to
/// anyone else reverts), so only members vote and a membership can be neither sold nor lent; a
/// member holds a whole number of memberships (decimals 0); the DAO never has zero members
/// (`LastMember`), so it can always vote again. Every change is checkpointed at the block it
/// happens in: a proposal counts weights and quorum at its snapshot (`getPastVotes`,
/// `getPastTotalSupply`), so a change after a proposal's snapshot does not touch that proposal.
contract KeyregMembershipToken is ERC20, ERC20Votes {
    /// The only account that may add or remove members: the DAO's executor.
    address public immutable executor;

    event MemberAdded(address indexed member, uint256 weight);
    event MemberRemoved(address indexed member, uint256 weight);

    error NoMembers();
    error NoExecutor();
    error LengthMismatch(uint256 members, uint256 weights);
    error ZeroWeight(address member);
    error ZeroAddressMember();
    error DuplicateMember(address member);
    error NotAMember(address account);
    error LastMember(address member);
    error OnlyExecutor(address caller);
    error MembershipNotTransferable();
    error MembershipNotDelegable(address delegatee);

    constructor(
        string memory name_,
        string memory symbol_,
        address executor_,
        address[] memory members,
        uint256[] memory weights
    ) ERC20(name_, symbol_) EIP712(name_, "1") {
        if (executor_ == address(0)) revert NoExecutor();
        if (members.length == 0) revert NoMembers();
        if (members.length != weights.length) revert LengthMismatch(members.length, weights.length);
        executor = executor_;
        for (uint256 i = 0; i < members.length; ++i) {
            _addMember(members[i], weights[i]);
        }
    }

    /// Add `member` with `weight` whole memberships (the DAO's vote only). Counts from the next
    /// proposal snapshot at or after this block, never in proposals already snapshotted.
    function addMember(address member, uint256 weight) external {
        if (msg.sender != executor) revert OnlyExecutor(msg.sender);
        _addMember(member, weight);
    }

    /// Remove `member`, burning its whole balance (the DAO's vote only). Proposals snapshotted
    /// before this block still count its vote; later ones refuse it.
    function removeMember(address member) external {
        if (msg.sender != executor) revert OnlyExecutor(msg.sender);
        uint256 weight = balanceOf(member);
        if (weight == 0) revert NotAMember(member);
        if (weight == totalSupply()) revert LastMember(member);
        _burn(member, weight);
        emit MemberRemoved(member, weight);
    }

    /// True if `account` holds a membership now.
    function isMember(address account) external view returns (bool) {
        return balanceOf(account) != 0;
    }

    /// Memberships are whole units.
    function decimals() public pure override returns (uint8) {
        return 0;
    }

    function _addMember(address member, uint256 weight) private {
        if (member == address(0)) revert ZeroAddressMember();
        if (weight == 0) revert ZeroWeight(member);
        if (balanceOf(member) != 0) revert DuplicateMember(member);
        _delegate(member, member); // first, so the mint's votes land on the member
        _mint(member, weight);
        emit MemberAdded(member, weight);
    }

    /// Votes stay with their member: `delegate`/`delegateBySig` to anyone else revert (lending a
    /// vote to a non-member would let someone with no membership vote).
    function _delegate(address account, address delegatee) internal override {
        if (delegatee != account) revert MembershipNotDelegable(delegatee);
        super._delegate(account, delegatee);
    }

    /// Only minting and burning (by addMember / removeMember) move balances: memberships cannot
    /// be sold or lent.
    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        if (from != address(0) && to != address(0)) revert MembershipNotTransferable();
        super._update(from, to, value);
    }
}
